"""The ``socpipe`` command: local services, the pipeline's stages, the demo.

Stage packages are imported by name when their command runs, so the spine does not depend on
them (ARCHITECTURE.md: the spine imports nothing of the others).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, cast

import typer
from rich.console import Console
from rich.table import Table

from socpipe.errors import ConfigError, SocpipeError
from socpipe.settings import Settings, load_settings

app = typer.Typer(
    help="socpipe: a SOC log pipeline for a provincial government.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="Local Kafka and Elasticsearch (deploy/local).", no_args_is_help=True
)
config_app = typer.Typer(help="Check and show configuration.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(config_app, name="config")
rules_app = typer.Typer(
    help="Sigma rules: validate, test, import a SigmaHQ checkout, publish to the detectors.",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules")
collect_app = typer.Typer(
    help="An agency's collector: files, .evtx, syslog and HTTP to Kafka (`collect check` first).",
    invoke_without_command=True,
)
app.add_typer(collect_app, name="collect")
agency_app = typer.Typer(
    help="Agencies on the SOC's Kafka: a SCRAM credential and a topic of their own each.",
    no_args_is_help=True,
)
app.add_typer(agency_app, name="agency")
indices_app = typer.Typer(
    help="Elasticsearch indices: templates and retention (alerts, events, audit, completeness).",
    no_args_is_help=True,
)
app.add_typer(indices_app, name="indices")
users_app = typer.Typer(
    help="Local users of the API (argon2 password hashes in Elasticsearch).", no_args_is_help=True
)
app.add_typer(users_app, name="users")
model_app = typer.Typer(
    help="The anomaly model: train on a baseline, show a model file's metadata.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")

console = Console(stderr=True)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file (default: $SOCPIPE_CONFIG)",
        exists=True,
        dir_okay=False,
    ),
]


class _StageModule(Protocol):
    def run(self, settings: Settings, stop: threading.Event) -> None: ...


def _settings(config: Path | None) -> Settings:
    settings = load_settings(config)
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from socpipe.logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    # These libraries log every connection or request at INFO.
    for chatty in ("kafka", "httpx", "elastic_transport"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    return settings


def _run_stage(module: str, settings: Settings) -> None:
    from socpipe.stream import stop_on_signals

    stage = cast(_StageModule, importlib.import_module(module))
    stage.run(settings, stop_on_signals())


# --- services -------------------------------------------------------------------------------


def _local(config: Path | None) -> Any:
    from socpipe.localservices import LocalServices

    return LocalServices(_settings(config).local)


def _print_status(statuses: list[Any]) -> None:
    table = Table("service", "state", "pid", "address", "memory", "log")
    for item in statuses:
        state = (
            "healthy" if item.healthy else ("running, not answering" if item.running else "stopped")
        )
        if item.detail:
            state += f" ({item.detail})"
        memory = f"{item.rss_bytes / 2**20:,.0f} MiB" if item.rss_bytes else "-"
        table.add_row(item.name, state, str(item.pid or "-"), item.url, memory, str(item.log_file))
    # Wide enough for the log paths when the output is a pipe or a CI log, not a terminal.
    out = Console()
    (out if out.is_terminal else Console(width=160)).print(table)


@services_app.command("up")
def services_up(
    names: Annotated[
        list[str] | None, typer.Argument(help="kafka, elasticsearch (default: both)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Fetch (once), start and wait for Kafka and Elasticsearch. Idempotent."""
    from socpipe.localservices import SERVICES

    local = _local(config)
    started = time.monotonic()
    statuses = local.up(
        progress=lambda msg: console.print(f"[cyan]•[/] {msg}"), names=names or SERVICES
    )
    _print_status(statuses)
    console.print(f"services up in {time.monotonic() - started:.1f}s")


@services_app.command("down")
def services_down(config: ConfigOption = None) -> None:
    """Stop the local services started by `socpipe services up`."""
    stopped = _local(config).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status(config: ConfigOption = None) -> None:
    """Whether each service runs and answers, its memory and its log file. Exit 1 if not."""
    statuses = _local(config).status()
    _print_status(statuses)
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


@services_app.command("logs")
def services_logs(
    name: Annotated[str, typer.Argument(help="kafka or elasticsearch")],
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    config: ConfigOption = None,
) -> None:
    """The last lines of a service's console log."""
    for line in _local(config).tail(name, lines):
        print(line)


# --- pipeline stages ------------------------------------------------------------------------


@app.command("topics")
def topics(config: ConfigOption = None) -> None:
    """Create the pipeline's Kafka topics that are missing, with partitions and retention."""
    from socpipe.kafka import ensure_topics

    created = ensure_topics(_settings(config).kafka)
    console.print(f"created: {', '.join(created) or 'none (all exist)'}")


@collect_app.callback()
def collect(
    ctx: typer.Context,
    path: Annotated[
        list[Path] | None,
        typer.Option("--path", "-p", help="a file to tail (repeatable; adds to collector.paths)"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the collector: its sources, the disk spool while Kafka is away, heartbeats."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(config)
    if path:
        settings = settings.model_copy(
            update={
                "collector": settings.collector.model_copy(
                    update={"paths": [*settings.collector.paths, *path]}
                )
            }
        )
    _run_stage("collectors.worker", settings)


@collect_app.command("check")
def collect_check(
    config: ConfigOption = None,
    kafka_timeout: Annotated[float, typer.Option(help="seconds to wait for Kafka's answer")] = 15.0,
) -> None:
    """Validate the collector's configuration and test its sources, disk and Kafka credential."""
    from collectors.check import ready, run_checks

    settings = _settings(config)
    checks = run_checks(settings, kafka_timeout_s=kafka_timeout)
    table = Table("check", "verdict", "detail")
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        table.add_row(check.what, f"[{colours[check.verdict]}]{check.verdict}", check.detail)
    Console().print(table)
    failed = [c for c in checks if c.verdict == "fail"]
    if ready(checks):
        Console().print("[green]ready[/green]: this collector can run and ship")
        return
    Console().print(f"[red]not ready[/red]: {len(failed)} check(s) failed")
    for check in failed:
        # Whole, unwrapped: for logs and scripts (the table wraps to the terminal).
        print(f"FAIL {check.what}: {check.detail}")
    raise typer.Exit(1)


@agency_app.command("add")
def agency_add(
    agency_id: Annotated[str, typer.Argument(help="the agency id (as in agency.id)")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="read the password from this file; if it does not exist, a new password is "
            "written to it (mode 0600)"
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Provision an agency: its credential, its topic soc.raw.<id>, and the ACLs that let the
    credential write only that topic. Again for an agency changes its password."""
    from socpipe.agencies import generate_password, provision_agency
    from socpipe.settings import read_secret_file

    settings = _settings(config)
    shown = False
    if password_file is not None and password_file.exists():
        password = read_secret_file(password_file, "--password-file")
    else:
        password = generate_password()
        if password_file is not None:
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as secret:
                secret.write(password + "\n")
        else:
            shown = True
    # An AgencyError (a bad id or password, the broker's refusal) is printed by main().
    result = provision_agency(settings.kafka, agency_id, password)
    out = Console()
    out.print(
        f"agency {result.agency_id}: credential {result.credential} for {result.principal}; "
        f"topic {result.topic}{' (created)' if result.topic_created else ''}"
    )
    for grant in result.grants_added:
        out.print(f"  granted {grant}")
    for grant in result.grants_removed:
        out.print(f"  removed {grant}")
    if shown:
        out.print(f"password (shown once; give it to the agency): {password}")
    elif password_file is not None:
        out.print(f"password in {password_file}")


@agency_app.command("revoke")
def agency_revoke(
    agency_id: Annotated[str, typer.Argument(help="the agency id")],
    config: ConfigOption = None,
) -> None:
    """Take an agency's access away (its ACLs and credential); its topic and data stay."""
    from socpipe.agencies import revoke_agency

    settings = _settings(config)
    result = revoke_agency(settings.kafka, agency_id)
    out = Console()
    out.print(
        f"agency {result.agency_id}: credential "
        f"{'removed' if result.credential_removed else 'was absent'}"
    )
    for grant in result.grants_removed:
        out.print(f"  removed {grant}")


@agency_app.command("list")
def agency_list(config: ConfigOption = None) -> None:
    """The agencies' credentials and what each may do."""
    from socpipe.agencies import describe_agencies

    settings = _settings(config)
    agencies = describe_agencies(settings.kafka)
    table = Table("user", "mechanisms", "grants")
    for access in agencies:
        table.add_row(
            access.user, ", ".join(access.mechanisms), "\n".join(str(g) for g in access.grants)
        )
    Console().print(table)


@app.command("parse")
def parse(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="log files or .evtx files (default: standard input)"),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="format name, or auto to detect it")
    ] = "auto",
    config: ConfigOption = None,
) -> None:
    """Print the ECS event of each line (or .evtx event) as one JSON line, as the detector sees it.

    Counts of parsed and unparsed records go to standard error.
    """
    tool = importlib.import_module("detectors.parsetool")
    worker = importlib.import_module("detectors.worker")
    settings = _settings(config)
    normalizer = worker.build_normalizer(settings.detector)
    known = normalizer.parsers.formats()
    if fmt not in known:
        console.print(f"[red]error:[/] unknown format {fmt!r}; known: {', '.join(known)}")
        raise typer.Exit(2)
    counts = tool.run_parse(list(files or []), fmt, settings, normalizer, sys.stdout.buffer)
    console.print(f"parsed {counts['parsed']}, unparsed {counts['unparsed']}")


@app.command("hunt")
def hunt(
    rules: Annotated[list[Path], typer.Option("--rules", "-r", help="Sigma rule files or folders")],
    events: Annotated[
        list[Path], typer.Option("--events", "-e", help=".evtx files, JSON lines or raw records")
    ],
    output: Annotated[str, typer.Option(help="json (one object per match) or table")] = "json",
    config: ConfigOption = None,
) -> None:
    """Run the Sigma engine offline over event files, as for forensics on a seized machine.

    Placeholder values (``%name%`` in ``|expand`` values) come from the config's
    detector.placeholders.
    """
    from rich.progress import Progress

    hunting = importlib.import_module("detectors.sigma.hunt")
    if output not in ("json", "table"):
        console.print(f"[red]error:[/] --output must be json or table, not {output!r}")
        raise typer.Exit(2)
    placeholders = _settings(config).detector.placeholders
    hunter = hunting.build_hunter(rules, placeholders)
    report = hunter.report
    console.print(
        f"{report.compiled} rules compiled, {report.failed} not, {report.problems} load errors"
        f", {report.correlations} correlations"
    )
    for message in report.messages[:20]:
        console.print(f"  [yellow]{message}[/]", highlight=False)
    counts: dict[tuple[str, str | None], int] = {}
    total = matched = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(", ".join(path.name for path in events), total=None)
        # One stream of every file: correlations span files, as a machine's logs do.
        records = (record for path in events for record in hunting.raw_records_of(path))
        for seen, hits in hunting.hunt(hunter, records):
            total += seen
            progress.advance(task, seen)
            for hit in hits:
                matched += 1
                counts[(hit.title, hit.level)] = counts.get((hit.title, hit.level), 0) + 1
                if output == "json":
                    sys.stdout.buffer.write(hit.to_json() + b"\n")
    if output == "table":
        table = Table("rule", "level", "matches")
        for (title, level), count in sorted(counts.items(), key=lambda item: -item[1]):
            table.add_row(title, level or "-", str(count))
        Console().print(table)
    console.print(f"{total} events, {matched} matches by {len(counts)} rules")


@rules_app.command("validate")
def rules_validate(
    paths: Annotated[list[Path], typer.Argument(help="rule files or folders")],
) -> None:
    """Report every problem in every rule file at once (file:line), and unmapped fields."""
    validation = importlib.import_module("detectors.sigma.validate")
    report = validation.validate(paths)
    for line in report.format_report():
        print(line)
    raise typer.Exit(report.exit_code)


@rules_app.command("test")
def rules_test(
    paths: Annotated[list[Path], typer.Argument(help="rule files or folders (or .tests.yml)")],
    require_tests: Annotated[
        bool, typer.Option("--require-tests", help="a rule without a tests file is an error")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list passed cases too")] = False,
    config: ConfigOption = None,
) -> None:
    """Run each rule's example events (<rule>.tests.yml beside it) through parsers and engine."""
    testing = importlib.import_module("detectors.sigma.ruletest")
    worker = importlib.import_module("detectors.worker")
    normalizer = worker.build_normalizer(_settings(config).detector)
    report = testing.run_tests(paths, require_tests=require_tests, normalizer=normalizer)
    for line in report.format_report(verbose=verbose):
        print(line)
    raise typer.Exit(report.exit_code)


@rules_app.command("import")
def rules_import(
    source: Annotated[
        Path, typer.Argument(help="a SigmaHQ checkout, or a folder of rules", file_okay=False)
    ],
    into: Annotated[
        Path | None,
        typer.Option(help="where to install them (default: <socpipe home>/rules/sigmahq)"),
    ] = None,
    include_aside: Annotated[
        bool, typer.Option("--include-aside", help="also deprecated/ and unsupported/")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="list every rule left out")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Install the rules of a SigmaHQ checkout that socpipe can run, with a manifest of the rest.

    Point detector.rules_paths at the folder to run them.
    """
    importer = importlib.import_module("detectors.sigma.importer")
    if into is None:
        local = importlib.import_module("socpipe.localservices")
        home = _settings(config).local.home or local.default_home()
        into = home / "rules" / "sigmahq"
    try:
        report = importer.import_rules(source, into, include_aside=include_aside)
    except importer.RuleImportError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for line in report.format_report(verbose=verbose):
        print(line)


@rules_app.command("publish")
def rules_publish(
    paths: Annotated[list[Path], typer.Argument(help="rule files or folders (filters too)")],
    pipelines: Annotated[
        Path | None, typer.Option(help="folder of YAML pipelines (default: rules/pipelines)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the rules as a detector would, then make them the rule set in force (soc.rules):
    every running detector swaps to them between batches."""
    publishing = importlib.import_module("detectors.sigma.publish")
    bundle = importlib.import_module("detectors.sigma.bundle")
    try:
        result = publishing.publish(paths, _settings(config), pipelines=pipelines)
    except bundle.BundleError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    report = result.report
    summary = (
        f"rule set {result.bundle.version}: {len(result.bundle.manifest['files'])} files, "
        f"{report.compiled} rules compiled, {report.failed} left out, {report.problems} errors"
    )
    if not result.published:
        for message in result.errors:
            print(message)
        console.print(f"[red]not published:[/] {summary}")
        raise typer.Exit(1)
    console.print(f"published {summary} ({len(result.bundle.data):,} bytes)")


@rules_app.command("status")
def rules_status(config: ConfigOption = None) -> None:
    """The rule set in force on soc.rules, and which version each detector runs."""
    publishing = importlib.import_module("detectors.sigma.publish")
    for line in publishing.format_status(publishing.status(_settings(config))):
        print(line)


@app.command("detect")
def detect(config: ConfigOption = None) -> None:
    """Consume soc.raw; produce ECS events and detections."""
    _run_stage("detectors.worker", _settings(config))


@app.command("watch")
def watch(config: ConfigOption = None) -> None:
    """soc.heartbeats → health records on soc.raw when a collector goes silent (and is back)."""
    _run_stage("detectors.health", _settings(config))


@app.command("correlate")
def correlate(config: ConfigOption = None) -> None:
    """Consume soc.correlate; produce correlation detections (Sigma correlation rules)."""
    _run_stage("detectors.correlator", _settings(config))


@app.command("anomaly")
def anomaly(config: ConfigOption = None) -> None:
    """Consume soc.events; score entities' windows with the models in force (soc.models)."""
    _run_stage("detectors.anomaly.scorer", _settings(config))


@app.command("alert")
def alert(config: ConfigOption = None) -> None:
    """Consume soc.detections; fold them into alerts in Elasticsearch."""
    _run_stage("alerting.worker", _settings(config))


@indices_app.command("setup")
def indices_setup(config: ConfigOption = None) -> None:
    """Put every family's index template (idempotent; `socpipe alert` does it at start)."""
    from alerting.indices import FAMILIES, Indices
    from socpipe.elastic import make_elasticsearch

    settings = _settings(config)
    es = settings.elasticsearch
    indices = Indices(make_elasticsearch(es), es.index_prefix, es.index_replicas)
    indices.ensure_templates()
    for family in FAMILIES:
        console.print(f"[green]✓[/] template {indices.alias(family)} ({indices.alias(family)}-*)")


@indices_app.command("retention")
def indices_retention(
    dry_run: Annotated[bool, typer.Option(help="list what would be deleted")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete the indices older than alerting.retention keeps (`socpipe alert` runs this
    every retention.interval_s)."""
    from alerting.indices import Indices
    from socpipe.elastic import make_elasticsearch

    settings = _settings(config)
    es = settings.elasticsearch
    indices = Indices(make_elasticsearch(es), es.index_prefix, es.index_replicas)
    names = indices.apply_retention(settings.alerting.retention, datetime.now(UTC), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for name in names:
        console.print(f"{verb} {name}")
    console.print(f"{len(names)} {'index' if len(names) == 1 else 'indices'} {verb.split()[-1]}")


def _user_store(settings: Settings) -> Any:
    from api.users import ElasticsearchUserStore
    from socpipe.elastic import make_elasticsearch

    store = ElasticsearchUserStore(
        make_elasticsearch(settings.elasticsearch), settings.elasticsearch.index_prefix
    )
    store.ensure_ready()
    return store


def _read_password(password_file: Path | None) -> str:
    """From a file (its first line), else asked twice on the terminal."""
    if password_file is not None:
        from socpipe.settings import read_secret_file

        return read_secret_file(password_file, "--password-file")
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password


PasswordFile = Annotated[
    Path | None, typer.Option(help="read the password from this file instead of asking")
]


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="the user name (lower case)")],
    role: Annotated[str, typer.Option(help="soc_admin, rule_author, analyst, agency_viewer")],
    agency: Annotated[str | None, typer.Option(help="the agency of an agency_viewer")] = None,
    password_file: PasswordFile = None,
    config: ConfigOption = None,
) -> None:
    """Create a user (the first soc_admin, say); the password is asked for, never an argument."""
    from socpipe.settings import Role

    settings = _settings(config)
    try:
        chosen = Role(role)
    except ValueError:
        raise ConfigError(f"--role {role!r}: one of {', '.join(r.value for r in Role)}") from None
    user = _user_store(settings).add(username, _read_password(password_file), chosen, agency)
    scope = f" of {user.agency}" if user.agency else ""
    console.print(f"[green]✓[/] user {user.username}: {user.role.value}{scope}")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="the user name")],
    password_file: PasswordFile = None,
    config: ConfigOption = None,
) -> None:
    """Set a user's password."""
    settings = _settings(config)
    _user_store(settings).set_password(username, _read_password(password_file))
    console.print(f"[green]✓[/] password of {username} changed")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """The users, their roles and agencies (never their hashes)."""
    settings = _settings(config)
    for user in _user_store(settings).list():
        state = " (disabled)" if user.disabled else ""
        typer.echo(f"{user.username}\t{user.role.value}\t{user.agency or '-'}{state}")


@model_app.command("train")
def model_train(
    source: Annotated[
        str, typer.Option("--from", help="elasticsearch (the indexed events) or a JSON-lines file")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="the model file to write")],
    since: Annotated[str, typer.Option(help="how far back the baseline goes (14d, 36h)")] = "14d",
    entity: Annotated[str, typer.Option(help="user, host, source_ip or agency")] = "user",
    window: Annotated[str, typer.Option(help="window length (5m, 1h)")] = "1h",
    contamination: Annotated[
        str, typer.Option(help="auto, or the share of baseline windows that would alert")
    ] = "auto",
    agency_rate: Annotated[
        float | None, typer.Option(help="per agency: the share of its windows that would alert")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Fit the anomaly model on a baseline and write it (skops) with its metadata. From
    Elasticsearch, alerts analysts closed as false positives are left out and raise their
    entity's threshold (docs/anomaly.md)."""
    from datetime import UTC, datetime

    from socpipe.errors import ConfigError

    modeling = importlib.import_module("detectors.anomaly.model")
    sources = importlib.import_module("detectors.anomaly.training")
    windows = importlib.import_module("detectors.anomaly.windows")
    settings = _settings(config)
    try:
        period = sources.span(since)
        spec = windows.WindowSpec(entity, int(sources.span(window).total_seconds()))
        rate: float | str = contamination if contamination == "auto" else float(contamination)
        until = datetime.now(UTC)
        exclude: list[Any] = []
        if source == "elasticsearch":
            from socpipe.elastic import make_elasticsearch

            es = make_elasticsearch(settings.elasticsearch)
            prefix = settings.elasticsearch.index_prefix
            events = list(sources.events_from_elasticsearch(es, prefix, until - period, until))
            exclude = sources.false_positives(es, prefix, spec.entity, until - period)
            trained_from = f"elasticsearch {prefix}-events-* {since}"
        else:
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"--from: {source} is neither elasticsearch nor a file")
            events = list(sources.events_from_file(path))
            trained_from = str(path)
        model = modeling.train(
            events, spec, trained_from=trained_from, contamination=rate,
            agency_rate=agency_rate, exclude=exclude,
        )  # fmt: skip
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    modeling.save(model, output)
    meta = model.meta
    console.print(
        f"model {meta.version}: {meta.windows:,} windows of {meta.entity} "
        f"({meta.events:,} events, {meta.excluded_windows} left out as false positives), "
        f"threshold {meta.threshold:.3f}, written to {output}"
    )


@model_app.command("show")
def model_show(
    path: Annotated[Path, typer.Argument(help="a model file (.skops)")],
    config: ConfigOption = None,
) -> None:
    """A model file's metadata as JSON (the file is checked as a detector would load it)."""
    from dataclasses import asdict

    from socpipe.errors import ConfigError

    modeling = importlib.import_module("detectors.anomaly.model")
    try:
        model = modeling.load(path)
    except (ConfigError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(asdict(model.meta), indent=2, ensure_ascii=False))


@model_app.command("publish")
def model_publish(
    path: Annotated[Path, typer.Argument(help="a model file (.skops) from `socpipe model train`")],
    name: Annotated[
        str | None, typer.Option(help="the name it runs under (default: entity-window, user-1h)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check a model as a scorer will load it, then make it the model in force under its name
    (soc.models): every running scorer swaps to it between batches."""
    from socpipe.errors import ConfigError

    publishing = importlib.import_module("detectors.anomaly.publish")
    try:
        chosen, model = publishing.publish(path, _settings(config), name=name)
    except ConfigError as exc:
        console.print(f"[red]not published:[/] {exc}")
        raise typer.Exit(1) from None
    meta = model.meta
    console.print(
        f"published model {chosen} = {meta.version} ({meta.entity} per {meta.window_s} s, "
        f"threshold {meta.threshold:.3f}, {path.stat().st_size:,} bytes)"
    )


@model_app.command("withdraw")
def model_withdraw(
    name: Annotated[str, typer.Argument(help="the name of a model in force")],
    config: ConfigOption = None,
) -> None:
    """Stop running a model: scorers drop it between batches (its open windows unjudged)."""
    from socpipe.errors import ConfigError

    publishing = importlib.import_module("detectors.anomaly.publish")
    try:
        publishing.withdraw(name, _settings(config))
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"withdrew model {name}")


@model_app.command("status")
def model_status(config: ConfigOption = None) -> None:
    """The models in force on soc.models, and which each scorer runs."""
    publishing = importlib.import_module("detectors.anomaly.publish")
    for line in publishing.format_status(publishing.status(_settings(config))):
        print(line)


@app.command("api")
def api(config: ConfigOption = None) -> None:
    """Serve the API and the console."""
    import uvicorn

    settings = _settings(config)
    if not settings.api.tokens:
        console.print(
            "[yellow]no api.tokens configured: every route but /health will answer 401[/]"
        )
    options: dict[str, Any] = {
        "host": settings.api.host,
        "port": settings.api.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if settings.api.workers > 1:
        # Each worker process builds its app from the same config (the file, or the
        # environment): uvicorn imports the factory by name in every worker.
        if config is not None:
            os.environ["SOCPIPE_CONFIG"] = str(config.resolve())
        uvicorn.run("api.app:app_from_environment", factory=True, workers=settings.api.workers,
                    **options)  # fmt: skip
        return
    uvicorn.run(importlib.import_module("api.app").create_app(settings), **options)


@app.command("demo")
def demo(
    duration: Annotated[
        float, typer.Option(help="stop after this many seconds (0: run until Ctrl-C)")
    ] = 0.0,
    rate: Annotated[float, typer.Option(help="lines per second per agency")] = 40.0,
    train_after: Annotated[
        float,
        typer.Option(
            help="seconds of feed the anomaly model is trained on, then published (0: none)"
        ),
    ] = 600.0,
    config: ConfigOption = None,
) -> None:
    """The whole pipeline on this machine, fed with sshd logs; prints the console's URL."""
    from socpipe.demo import DemoRun

    settings = _settings(config)
    DemoRun(settings, console=console).run(duration=duration, rate=rate, train_after=train_after)


# --- config ---------------------------------------------------------------------------------


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration; exit 2 with every bad key's path if it is wrong."""
    _settings(config)
    console.print("configuration is valid")


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration as JSON, secrets masked."""
    print(_settings(config).model_dump_json(indent=2))


def main() -> None:
    """Entry point: a SocpipeError is printed as one clear message with exit code 2."""
    try:
        app()
    except SocpipeError as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    main()

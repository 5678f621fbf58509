// Sign-in: a local user's name and password, or an API key (scripts' and the demo's credential).
"use strict";
import { ApiError, signIn, signInWithKey } from "../api.js";
import { field, h, replace } from "../dom.js";
import { t } from "../i18n.js";

export async function render(page, ctx) {
  let withKey = false;
  const problem = h("p", { class: "errors", role: "alert" });

  function refused(error, key) {
    if (error instanceof ApiError && error.status === 401) return t(key ? "signin.key_refused" : "signin.refused");
    if (error instanceof ApiError && error.status === 429) return t("signin.too_many");
    return error instanceof ApiError ? `${t("error.server", { status: error.status })} ${error.lines().join("; ")}`
      : t("error.network");
  }

  function draw() {
    const username = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
    const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
    const key = h("input", { name: "key", type: "password", autocomplete: "off", required: true, minlength: 16 });
    const submit = h("button", { type: "submit", class: "primary" }, t("signin.submit"));
    const form = h("form", {
      "aria-label": t("signin.title"),
      on: {
        submit: async (event) => {
          event.preventDefault();
          submit.disabled = true;
          replace(problem);
          try {
            if (withKey) await signInWithKey(key.value.trim());
            else await signIn(username.value.trim(), password.value);
            ctx.refresh();
          } catch (error) {
            replace(problem, refused(error, withKey));
            submit.disabled = false;
          }
        },
      },
    },
    withKey ? field(t("signin.key"), key) : [field(t("signin.username"), username), field(t("signin.password"), password)],
    submit, problem,
    h("button", { type: "button", class: "link", on: { click: () => { withKey = !withKey; draw(); } } },
      t(withKey ? "signin.with_password" : "signin.with_key")));
    replace(page, h("section", { class: "signin panel" },
      h("h1", {}, t("signin.title")), h("p", { class: "muted" }, t("signin.intro")), form));
    (withKey ? key : username).focus();
  }

  ctx.title(t("signin.title"));
  draw();
}

// A first console page: sign in with an API token, then the alert queue refreshes every 5 s.
// The token stays in this tab's sessionStorage and is sent only to this origin.
"use strict";
const state = document.getElementById("state");
const rows = document.getElementById("rows");
const total = document.getElementById("total");
const tokenInput = document.getElementById("token");

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

async function refresh() {
  const token = sessionStorage.getItem("socpipe-token");
  if (!token) return;
  const response = await fetch("alerts?limit=100", { headers: { Authorization: "Bearer " + token } });
  if (response.status === 401) { state.textContent = "Token không hợp lệ / invalid token"; return; }
  if (!response.ok) { state.textContent = "Error " + response.status; return; }
  const body = await response.json();
  state.textContent = "";
  total.textContent = "(" + body.total + ")";
  rows.replaceChildren(...body.data.map((a) => {
    const tr = document.createElement("tr");
    tr.append(
      cell(new Date(a.last_seen).toLocaleString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh" })),
      cell(a.severity, "sev-" + a.severity), cell(a.rule.title), cell(a.entities.agency),
      cell(a.entities.host), cell(a.entities.user), cell(a.entities.source_ip),
      cell(a.count), cell(a.status));
    return tr;
  }));
}

document.getElementById("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("socpipe-token", tokenInput.value);
  tokenInput.value = "";
  refresh();
});
refresh();
setInterval(refresh, 5000);

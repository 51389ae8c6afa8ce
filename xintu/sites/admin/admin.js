// 芯图相册 管理后台: a plain-JS single page over /api/v1/admin/... (no framework, no CDN).
// The session token lives in sessionStorage (per tab, gone when the tab closes) and is sent as a
// Bearer header, so the API needs no cookies and no CSRF defence across the two origins.
"use strict";

const API = (window.XINTU_ADMIN && window.XINTU_ADMIN.apiBase) || "";
const TOKEN_KEY = "xintu_admin_token";
const ROLE_LABELS = { viewer: "只读", operator: "运营" };
const CATEGORY_LABELS = { social_activities: "社交活动", pets: "宠物", single_person: "单人照", foods: "美食",
  travel_scenery: "旅行风景", screenshot: "截图", idcard: "证件", other: "其他" };
const REASON_LABELS = { signup_bonus: "关注赠送", membership_bonus: "会员赠送", purchase: "购买",
  edit_spend: "修图消耗", edit_refund: "修图退回", admin_adjust: "后台调整", refund: "订单退款收回" };
const STATUS_LABELS = { created: "待支付", paid: "已支付", closed: "已关闭", refunding: "退款中",
  partially_refunded: "部分退款", refunded: "已退款" };
let me = null;

// ---------- helpers ----------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const yuan = (fen) => (fen < 0 ? "-" : "") + "¥" + (Math.abs(fen) / 100).toFixed(2);
const pct = (x) => (x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%");
const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("zh-CN"));
// The API speaks UTC (…Z); operators read Beijing time whatever the browser's own zone is.
const BEIJING = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
  day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false });
function when(iso) {
  if (!iso) return "—";
  const p = Object.fromEntries(BEIJING.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour === "24" ? "00" : p.hour}:${p.minute}`;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  let body = options.body;
  if (body && !(body instanceof FormData)) { headers["Content-Type"] = "application/json"; body = JSON.stringify(body); }
  const res = await fetch(API + "/api/v1/admin" + path, { method: options.method || "GET", headers, body });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && path !== "/login") { sessionStorage.removeItem(TOKEN_KEY); showLogin(err.message || "登录已过期，请重新登录"); }
    throw new ApiError(res.status, err.code || "http_" + res.status, err.message || "请求失败 (" + res.status + ")");
  }
  return data;
}

function showError(e) {
  const box = document.getElementById("page-error");
  box.textContent = e ? e.message : "";
  box.hidden = !e;
}

// ---------- login ----------
function showLogin(message) {
  me = null;
  document.getElementById("app-view").hidden = true;
  document.getElementById("login-view").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target, button = document.getElementById("login-submit");
  button.disabled = true;
  try {
    const data = await api("/login", { method: "POST",
      body: { username: form.username.value.trim(), password: form.password.value } });
    sessionStorage.setItem(TOKEN_KEY, data.token);
    form.password.value = "";
    await start();
  } catch (e) {
    document.getElementById("login-error").textContent = e.message;
  } finally { button.disabled = false; }
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/logout", { method: "POST" }); } catch (e) { /* already gone */ }
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("已退出");
});

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  try { me = await api("/me"); } catch (e) { return; }
  document.getElementById("who-name").textContent = me.username;
  document.getElementById("who-role").textContent = ROLE_LABELS[me.role] || me.role;
  document.getElementById("login-view").hidden = true;
  document.getElementById("app-view").hidden = false;
  route();
}

// ---------- router ----------
const PAGES = {};
function route() {
  if (!me) return;
  const [page, arg] = (location.hash.replace(/^#\//, "") || "overview").split("/");
  const render = PAGES[page] || PAGES.overview;
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  showError(null);
  const main = document.getElementById("page");
  main.replaceChildren(el("p", { class: "muted" }, "加载中…"));
  render(main, arg ? decodeURIComponent(arg) : null).catch((e) => { main.replaceChildren(); showError(e); });
}
window.addEventListener("hashchange", route);
const canOperate = () => me && me.role === "operator";

function table(columns, rows, onClick) {
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.label)))),
    el("tbody", {}, rows.length ? rows.map((r) => el("tr", {
      class: onClick ? "clickable" : "", "data-id": r.id ?? r.out_trade_no,
      onclick: onClick ? () => onClick(r) : null },
      columns.map((c) => el("td", { class: c.num ? "num" : "", "data-col": c.key }, c.fmt ? c.fmt(r[c.key], r) : (r[c.key] ?? "")))))
      : el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "暂无数据"))));
}

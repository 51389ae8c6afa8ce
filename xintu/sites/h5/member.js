// 芯图相册 H5 member page. Everything shown comes from the API; prices are never computed here.
"use strict";
const API = window.XINTU_API_BASE || "";
const REASONS = { signup_bonus: "关注奖励", membership_bonus: "会员赠送", purchase: "购买积分",
  edit_spend: "图片编辑", edit_refund: "编辑退还", admin_adjust: "人工调整", refund: "订单退款" };
const STATUS = { created: "待支付", paid: "已支付", closed: "已关闭", refunding: "退款中",
  partially_refunded: "部分退款", refunded: "已退款" };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const resp = await fetch(API + path, { credentials: "include",
    headers: { "Content-Type": "application/json" }, ...options });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((data.error && data.error.message) || "请求失败");
    err.status = resp.status;
    throw err;
  }
  return data;
}

function yuan(fen) { return "¥" + (fen / 100).toFixed(2); }
// Dates as the user lives them (Beijing time), YYYY-MM-DD.
function day(iso) { return iso ? new Date(iso).toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" }) : ""; }
function notice(text) { const n = $("notice"); n.textContent = text; n.hidden = !text; }

function item(left, right, cls) {
  const li = document.createElement("li");
  const a = document.createElement("span"); a.textContent = left;
  const b = document.createElement("span"); b.textContent = right; if (cls) b.className = cls;
  li.append(a, b);
  return li;
}

function renderMe(me) {
  $("member-status").textContent = me.is_member ? "会员至 " + day(me.member_expires_at) : "未开通";
  $("credits").textContent = String(me.credits_balance);
  const ledger = $("ledger"); ledger.replaceChildren();
  for (const row of me.ledger) {
    const sign = row.delta > 0 ? "+" : "";
    ledger.append(item(`${day(row.created_at)} ${REASONS[row.reason] || row.reason}`,
      sign + row.delta, row.delta > 0 ? "plus" : "minus"));
  }
  if (!me.ledger.length) ledger.append(item("暂无记录", "", "muted"));
}

function priceItem(label, amountFen, kind, pkg) {
  const li = document.createElement("li");
  const text = document.createElement("span"); text.textContent = `${label} ${yuan(amountFen)}`;
  const btn = document.createElement("button");
  btn.textContent = "购买"; btn.dataset.kind = kind; btn.dataset.package = pkg;
  btn.addEventListener("click", () => buy(btn, kind, pkg));
  li.append(text, btn);
  return li;
}

function renderPrices(prices) {
  const m = prices.member;
  $("member-prices").replaceChildren(priceItem(`${m.days} 天会员（赠 ${m.bonus_credits} 积分）`,
    m.amount_fen, "member", "member"));
  $("credit-prices").replaceChildren(...prices.credits.map(
    (p) => priceItem(`${p.credits} 积分`, p.amount_fen, "credits", p.package)));
}

function renderOrders(orders) {
  const list = $("orders"); list.replaceChildren();
  for (const o of orders.items) {
    list.append(item(`${day(o.created_at)} ${o.kind === "member" ? "会员" : o.quantity + " 积分"} ${yuan(o.amount_fen)}`,
      STATUS[o.status] || o.status));
  }
  if (!orders.items.length) list.append(item("暂无订单", "", "muted"));
}

// Date and time in Beijing time, YYYY-MM-DD HH:mm.
function when(iso) {
  return iso ? new Date(iso).toLocaleString("sv-SE", { timeZone: "Asia/Shanghai" }).slice(0, 16) : "";
}

function renderDevices(sessions) {
  const list = $("devices"); list.replaceChildren();
  for (const s of sessions.items) {
    const li = document.createElement("li");
    const text = document.createElement("div");
    const name = document.createElement("strong"); name.textContent = s.platform_name;
    const meta = document.createElement("small");
    meta.textContent = `首次登录 ${when(s.first_seen_at)} · 最近使用 ${when(s.last_seen_at)}` +
      (s.place ? ` · ${s.place}` : s.network ? ` · 网络 ${s.network}` : "");
    text.append(name, meta);
    const btn = document.createElement("button");
    btn.textContent = "退出"; btn.className = "danger small";
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await api(`/api/v1/h5/sessions/${s.id}/revoke`, { method: "POST" });
        notice(`已退出 ${s.platform_name}`);
        renderDevices(await api("/api/v1/h5/sessions"));
      } catch (err) { notice(err.message); btn.disabled = false; }
    });
    li.append(text, btn);
    list.append(li);
  }
  if (!sessions.items.length) list.append(item("没有已登录的客户端", "", "muted"));
}

function setupPrivacy() {
  $("export-zip").href = API + "/api/v1/h5/export.zip";
  $("export-json").href = API + "/api/v1/h5/export";
  const panel = $("forget-confirm"), text = $("forget-text"), go = $("forget-do");
  $("forget-start").addEventListener("click", () => { panel.hidden = false; $("forget-start").hidden = true;
    text.focus(); });
  $("forget-cancel").addEventListener("click", () => { panel.hidden = true; $("forget-start").hidden = false;
    text.value = ""; go.disabled = true; });
  text.addEventListener("input", () => { go.disabled = text.value.trim() !== "注销账号"; });
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      await api("/api/v1/h5/forget", { method: "POST", body: JSON.stringify({ confirm: text.value.trim() }) });
      for (const el of document.querySelectorAll("main > section")) el.hidden = true;
      notice("账号已注销，我们保存的你的个人数据已删除。");
    } catch (err) { notice(err.message); go.disabled = false; }
  });
}

async function refresh() {
  const [me, orders, sessions] = await Promise.all([api("/api/v1/h5/me"), api("/api/v1/orders"),
    api("/api/v1/h5/sessions")]);
  renderMe(me); renderOrders(orders); renderDevices(sessions);
}

async function waitPaid(orderNo) {
  notice("正在确认支付结果…");
  for (let i = 0; i < 20; i++) {
    const order = await api("/api/v1/orders/" + encodeURIComponent(orderNo));
    if (order.status === "paid") { notice("支付成功"); return refresh(); }
    await new Promise((r) => setTimeout(r, 500));
  }
  notice("暂未收到支付结果，请稍后刷新");
}

async function buy(btn, kind, pkg) {
  btn.disabled = true;
  try {
    const order = await api("/api/v1/orders", { method: "POST", body: JSON.stringify({ kind, package: pkg }) });
    if (order.pay.mode === "sandbox") {           // offline mode: the sandbox cashier stands in for WeChat
      location.href = order.pay.cashier_url;
      return;
    }
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", order.pay.params, (res) => {
      if (res.err_msg === "get_brand_wcpay_request:ok") waitPaid(order.out_trade_no);
      else notice("支付未完成");
    });
  } catch (err) {
    notice(err.message);
  } finally {
    btn.disabled = false;
  }
}

async function boot() {
  const params = new URLSearchParams(location.search);
  const ticket = params.get("ticket");
  if (ticket) {                     // hand-off from the OAuth landing: trade it for the HttpOnly cookie
    params.delete("ticket");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    await api("/api/v1/h5/session", { method: "POST", body: JSON.stringify({ ticket }) }).catch(() => null);
  }
  try {
    await refresh();
  } catch (err) {
    if (err.status === 401) {
      location.href = API + "/wechat/oauth/start?next=" + encodeURIComponent(location.href);
      return;
    }
    notice(err.message);
    return;
  }
  renderPrices(await api("/api/v1/prices"));
  for (const id of ["loading"]) $(id).hidden = true;
  for (const id of ["account", "shop", "ledger-section", "orders-section", "devices-section", "privacy-section"]) {
    $(id).hidden = false;
  }
  setupPrivacy();
  if (params.get("view") === "devices") {   // the link in the WeChat login notice
    $("devices-section").classList.add("highlight");
    $("devices-section").scrollIntoView();
  }
  if (params.get("order")) await waitPaid(params.get("order"));
}

boot();

// Pages of the 管理后台; registered into PAGES (admin.js) and rendered by the hash router.
"use strict";

PAGES.overview = async (main) => {
  const data = await api("/overview");
  const t = data.today;
  const cards = [
    ["requests", "今日识别请求", num(t.requests)], ["images", "识别图片", num(t.images)],
    ["cache_hit_ratio", "缓存命中率", pct(t.cache_hit_ratio)], ["llm_success_ratio", "大模型成功率", pct(t.llm_success_ratio)],
    ["latency_p95_ms", "P95 延迟", t.latency_p95_ms === null ? "—" : Math.round(t.latency_p95_ms) + " ms"],
    ["new_users", "今日新增用户", num(t.new_users)], ["members_active", "有效会员", num(data.members_active)],
    ["members_expiring_7d", "7 天内到期", num(data.members_expiring_7d)], ["orders_paid", "今日支付订单", num(t.orders_paid)],
    ["revenue", "今日收入", yuan(t.revenue_fen)], ["credits_granted", "今日发放积分", num(t.credits_granted)],
    ["credits_spent", "今日消耗积分", num(t.credits_spent)], ["edit_tasks", "今日修图任务", num(t.edit_tasks)],
    ["downloads", "今日 APP 下载", num(t.downloads)],
  ];
  // The charts are SVG rendered by the server (pygal) from the same numbers; no script inside.
  const chart = (key) => { const d = el("div", { class: "chart", "data-chart": key }); d.innerHTML = data.charts[key]; return d; };
  main.replaceChildren(
    el("h2", {}, "概览 · ", el("span", { id: "overview-day" }, data.day)),
    data.anomalies.length ? el("ul", { class: "alerts" }, data.anomalies.map((a) => el("li", { class: a.level, "data-key": a.key }, a.message))) : "",
    refundAlerts(data.refunds),
    el("div", { class: "cards", id: "overview-cards" }, cards.map(([key, label, value]) =>
      el("div", { class: "card", "data-key": key }, el("div", { class: "label" }, label), el("div", { class: "value" }, value)))),
    el("div", { class: "charts" }, ["requests", "ratios", "revenue", "methods", "categories"].map(chart)));
};

// Abnormal refunds need an operator in the merchant portal; shortfalls are credits spent before a refund.
function refundAlerts(r) {
  const items = [
    ...r.abnormal.map((x) => el("li", { class: "critical", "data-key": "refund_abnormal" },
      "退款异常：订单 " + x.out_trade_no + " 退款单 " + x.out_refund_no + "（" + yuan(x.amount_fen) + "），请在商户平台处理")),
    ...r.shortfalls.map((x) => el("li", { class: "warning", "data-key": "refund_shortfall" },
      "退款未能收回积分：用户 " + x.user_id + " 订单 " + x.out_trade_no + " 少收回 " + x.credits_shortfall + " 积分")),
  ];
  return items.length ? el("ul", { class: "alerts", id: "refund-alerts" }, items) : "";
}

PAGES.users = async (main, id) => {
  if (id) return userDetail(main, id);
  const q = new URLSearchParams(location.search).get("q") || sessionStorage.getItem("xintu_admin_q") || "";
  const search = el("input", { id: "user-search", placeholder: "昵称或 openid", value: q });
  const list = el("div");
  const load = async () => {
    sessionStorage.setItem("xintu_admin_q", search.value);
    const data = await api("/users?q=" + encodeURIComponent(search.value.trim()));
    list.replaceChildren(table([
      { key: "id", label: "ID" }, { key: "nickname", label: "昵称" }, { key: "openid", label: "openid" },
      { key: "credits_balance", label: "积分", num: true },
      { key: "is_member", label: "会员", fmt: (v, r) => (v ? "至 " + when(r.member_expires_at).slice(0, 10) : "—") },
      { key: "created_at", label: "注册时间", fmt: when },
    ], data.items, (r) => { location.hash = "#/users/" + r.id; }), el("p", { class: "muted" }, "共 " + data.total + " 位用户"));
  };
  main.replaceChildren(el("h2", {}, "用户"),
    el("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); load().catch(showError); } },
      el("label", {}, "搜索", search), el("button", { type: "submit", id: "user-search-submit" }, "搜索")), list);
  await load();
};

// `fresh`: the answer of a write (read on the primary), so a lagging replica cannot show the old balance.
async function userDetail(main, id, fresh) {
  const data = fresh || await api("/users/" + id);
  const u = data.user;
  const adjust = el("div", { class: "panel", id: "adjust-panel" });
  if (canOperate()) {
    const delta = el("input", { name: "delta", id: "adjust-delta", type: "number", step: "1", required: true });
    const reason = el("input", { name: "reason", id: "adjust-reason", required: true, maxlength: "200", placeholder: "必填，写入流水" });
    const status = el("span", { id: "adjust-status", class: "ok" });
    adjust.append(el("h3", {}, "调整积分"), el("form", { onsubmit: async (ev) => {
      ev.preventDefault(); status.textContent = "";
      try {
        const done = await api("/users/" + id + "/credits", { method: "POST", body: { delta: Number(delta.value), reason: reason.value.trim() } });
        await userDetail(main, id, done);
        document.getElementById("adjust-status").textContent = "已调整";
      } catch (e) { showError(e); }
    } }, el("label", {}, "增减 (正数增加，负数扣减)", delta), el("label", {}, "原因", reason),
      el("button", { type: "submit", id: "adjust-submit" }, "提交"), status));
  } else adjust.append(el("p", { class: "muted" }, "只读账号不能调整积分"));
  main.replaceChildren(
    el("h2", {}, el("a", { href: "#/users" }, "用户"), " / ", u.nickname || u.openid),
    el("div", { class: "cards" }, [["积分余额", num(u.credits_balance), "balance"], ["会员", u.is_member ? "至 " + when(u.member_expires_at).slice(0, 10) : "否", "member"],
      ["openid", u.openid, "openid"], ["注册", when(u.created_at).slice(0, 10), "created"]].map(([label, value, key]) =>
      el("div", { class: "card", "data-key": key }, el("div", { class: "label" }, label), el("div", { class: "value" }, value)))),
    adjust, el("h3", {}, "客户端登录 ", el("span", { class: "muted" }, "（北京时间）")),
    el("div", { id: "sessions" }, sessionsTable(main, id, data.sessions || [])),
    el("h3", {}, "积分流水 ", el("span", { class: "muted" }, "（北京时间）")),
    el("div", { id: "ledger" }, table([
      { key: "created_at", label: "时间", fmt: when }, { key: "delta", label: "变动", num: true, fmt: (v) => (v > 0 ? "+" : "") + v },
      { key: "balance_after", label: "余额", num: true }, { key: "reason", label: "类型", fmt: (v) => REASON_LABELS[v] || v },
      { key: "ref", label: "关联", fmt: (v, r) => (r.reason === "admin_adjust" ? "" : v) },
      { key: "operator", label: "操作人" }, { key: "note", label: "备注" },
    ], data.ledger)));
}

// The user's live bound sessions; operators can end one or all (the tokens then answer 401 token_revoked).
function sessionsTable(main, id, sessions) {
  const revoke = async (sessionId) => {
    try {
      const done = await api("/users/" + id + "/sessions/revoke", { method: "POST", body: sessionId ? { session_id: sessionId } : {} });
      await userDetail(main, id, done);
    } catch (e) { showError(e); }
  };
  const columns = [
    { key: "platform_name", label: "平台" }, { key: "client_id", label: "客户端 ID" },
    { key: "first_seen_at", label: "首次登录", fmt: when }, { key: "last_seen_at", label: "最近使用", fmt: when },
    { key: "ip", label: "地址", fmt: (v, r) => (v || "") + (r.place ? " · " + r.place : "") },
    { key: "expires_at", label: "到期", fmt: when },
  ];
  if (canOperate()) {
    columns.push({ key: "id", label: "", fmt: (v) => el("button", { class: "small", "data-session": v, onclick: () => revoke(v) }, "注销") });
  }
  return el("div", {}, table(columns, sessions),
    canOperate() && sessions.length ? el("button", { id: "revoke-all", onclick: () => revoke(null) }, "注销全部登录") : "");
}

PAGES.orders = async (main) => {
  const status = el("select", { id: "order-status" }, el("option", { value: "" }, "全部"),
    Object.entries(STATUS_LABELS).map(([v, label]) => el("option", { value: v }, label)));
  const list = el("div");
  const load = async () => {
    const data = await api("/orders?status=" + status.value);
    list.replaceChildren(table([
      { key: "out_trade_no", label: "订单号" }, { key: "nickname", label: "用户" },
      { key: "kind", label: "类型", fmt: (v, r) => (v === "member" ? "会员" : "积分包 " + r.package) },
      { key: "amount_fen", label: "金额", num: true, fmt: yuan }, { key: "refunded_fen", label: "已退", num: true, fmt: (v) => (v ? yuan(v) : "") },
      { key: "status", label: "状态", fmt: (v) => STATUS_LABELS[v] || v },
      { key: "created_at", label: "下单时间", fmt: when }, { key: "paid_at", label: "支付时间", fmt: when },
    ], data.items), el("p", { class: "muted" }, "共 " + data.total + " 笔"));
  };
  status.addEventListener("change", () => load().catch(showError));
  const refund = el("div", { class: "panel", id: "refund-panel" });
  if (canOperate()) {
    const no = el("input", { name: "out_trade_no", id: "refund-order", required: true, size: "34" });
    const fen = el("input", { name: "amount_fen", id: "refund-amount", type: "number", min: "1", step: "1", placeholder: "留空退剩余全部" });
    const reason = el("input", { name: "reason", id: "refund-reason", required: true, maxlength: "80", placeholder: "必填" });
    const done = el("span", { id: "refund-status", class: "ok" });
    refund.append(el("h3", {}, "退款"), el("form", { onsubmit: async (ev) => {
      ev.preventDefault(); done.textContent = "";
      try {
        const body = { reason: reason.value.trim() };
        if (fen.value) body.amount_fen = Number(fen.value);
        const r = await api("/orders/" + encodeURIComponent(no.value.trim()) + "/refund", { method: "POST", body });
        await load();
        done.textContent = "已提交退款 " + r.out_refund_no + "（" + yuan(r.amount_fen) + "）";
      } catch (e) { showError(e); }
    } }, el("label", {}, "订单号", no), el("label", {}, "金额（分）", fen), el("label", {}, "原因", reason),
      el("button", { type: "submit", id: "refund-submit" }, "退款"), done));
  }
  main.replaceChildren(el("h2", {}, "订单 ", el("span", { class: "muted" }, "（北京时间）")), el("div", { class: "toolbar" }, el("label", {}, "状态", status)), refund, list);
  await load();
};

PAGES.releases = async (main, _arg, uploaded) => {
  const data = await api("/releases");
  // the list is read on the replica: make sure a release we just uploaded is shown even if it lags
  if (uploaded && !data.items.some((r) => r.id === uploaded.id)) data.items.unshift(uploaded);
  const upload = el("div", { class: "panel" });
  if (canOperate()) {
    const status = el("span", { class: "ok", id: "release-status" });
    upload.append(el("h3", {}, "上传新版本"), el("form", { id: "release-form", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("/releases", { method: "POST", body: new FormData(ev.target) });
        await PAGES.releases(main, null, r);
        document.getElementById("release-status").textContent = "已上传 " + r.version + "，SHA-256 " + r.sha256.slice(0, 12) + "…";
      } catch (e) { showError(e); }
    } }, el("label", {}, "平台", el("select", { name: "platform" }, ["windows", "mac", "android"].map((p) => el("option", { value: p }, p)))),
      el("label", {}, "版本号", el("input", { name: "version", required: true, placeholder: "1.2.0" })),
      el("label", {}, "安装包", el("input", { name: "file", type: "file", required: true })),
      el("label", {}, "更新说明", el("input", { name: "notes", size: "40" })),
      el("button", { type: "submit" }, "上传"), status));
  } else upload.append(el("p", { class: "muted" }, "只读账号不能上传版本"));
  main.replaceChildren(el("h2", {}, "版本发布"), upload, table([
    { key: "platform", label: "平台" }, { key: "version", label: "版本" }, { key: "size", label: "大小", num: true,
      fmt: (v) => (v >= 1048576 ? (v / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(v / 1024)) + " KB") }, { key: "sha256", label: "SHA-256", fmt: (v) => v.slice(0, 16) + "…" },
    { key: "downloads", label: "下载", num: true }, { key: "notes", label: "说明" }, { key: "created_at", label: "上传时间", fmt: when },
  ], data.items));
};

PAGES.inference = async (main) => {
  // inference.mode (settings table): auto = cache → LLM → local model; llm / local force one path.
  const MODES = { auto: "自动（缓存 → 大模型 → 本地模型）", llm: "只用大模型（失败时仍回退本地）", local: "只用本地模型（不调用大模型）" };
  const data = await api("/inference");
  const status = el("span", { class: "ok", id: "inference-status" });
  const select = el("select", { id: "inference-mode", disabled: !canOperate(), style: "max-width:420px" },
    Object.entries(MODES).map(([v, label]) => el("option", { value: v, selected: v === data.mode }, label)));
  select.addEventListener("change", async () => {
    try {
      const r = await api("/inference", { method: "PUT", body: { mode: select.value } });
      await PAGES.inference(main);   // shows who changed it and when
      document.getElementById("inference-status").textContent = "已切换为：" + MODES[r.mode] + "（数秒内对所有服务器生效）";
    } catch (e) { select.value = data.mode; showError(e); }
  });
  // DashScope breakers: open after quota / key / billing / missing-model errors; no calls until they close.
  const upstreams = el("ul", { id: "upstreams" }, (data.upstreams || []).map((u) => el("li", {}, u.name + "：",
    u.open ? el("span", { class: "error" }, "已熔断（" + (u.code || u.reason) + "，" + u.seconds_left + " 秒后重试）")
      : el("span", { class: "ok" }, "正常"))));
  main.replaceChildren(el("h2", {}, "识别开关"), el("div", { class: "panel" },
    el("label", {}, "识别方式", select),
    el("p", { class: "muted" }, "缓存照常使用。上次修改：" + (data.updated_by || "—") + " " + when(data.updated_at)),
    canOperate() ? "" : el("p", { class: "muted" }, "只读账号不能切换"), status),
    el("h2", {}, "上游服务（DashScope）"), el("div", { class: "panel" }, upstreams));
};

start();

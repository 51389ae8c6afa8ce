// Rendered at deploy time by `xintu site build admin`; empty = API on the same origin.
window.XINTU_ADMIN = window.XINTU_ADMIN || { apiBase: "" };

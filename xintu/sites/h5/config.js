// Empty = same origin (embedded mode). A CDN deployment renders this file with the API origin.
window.XINTU_API_BASE = window.XINTU_API_BASE || "";

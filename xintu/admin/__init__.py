"""管理后台: admin accounts and sessions, and the admin API the dashboard SPA talks to."""

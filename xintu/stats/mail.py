"""Mail the daily report through the configured SMTP server (SMTP_* settings)."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

from flask import current_app

from xintu.errors import ConfigError, UpstreamError
from xintu.stats.report import DailyReport

SMTP_DEFAULTS = {"SMTP_PORT": 25, "SMTP_STARTTLS": False, "SMTP_TIMEOUT": 30}


def _conf(key: str):
    value = current_app.config.get(key)
    return SMTP_DEFAULTS.get(key) if value is None else value


def build_message(report: DailyReport, html: str, to: list[str], sender: str) -> EmailMessage:
    msg = EmailMessage()
    flag = f"（{len(report.anomalies)} 项异常）" if report.anomalies else ""
    msg["Subject"] = f"芯图相册日报 {report.day.isoformat()}{flag}"
    msg["From"], msg["To"] = sender, ", ".join(to)
    lines = [f"{report.day.isoformat()} 识别请求 {report.figures.requests}，新增用户 {report.figures.new_users}。"]
    lines += [f"异常：{a.message}" for a in report.anomalies]
    msg.set_content("\n".join(lines) + "\n完整报告见 HTML 部分。")
    msg.add_alternative(html, subtype="html")
    return msg


def send_report(report: DailyReport, html: str, to: list[str]) -> None:
    host = _conf("SMTP_HOST")
    sender = _conf("SMTP_FROM")
    if not host or not sender:
        raise ConfigError("mailing the report needs SMTP_HOST and SMTP_FROM", code="smtp_not_configured")
    msg = build_message(report, html, to, sender)
    try:
        with smtplib.SMTP(host, int(_conf("SMTP_PORT")), timeout=float(_conf("SMTP_TIMEOUT"))) as smtp:
            if _conf("SMTP_STARTTLS"):
                smtp.starttls()
            if _conf("SMTP_USER"):
                smtp.login(_conf("SMTP_USER"), _conf("SMTP_PASSWORD") or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise UpstreamError(f"SMTP 发送失败: {exc}", code="smtp_failed") from None

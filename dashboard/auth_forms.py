"""The sign-in, sign-out, change-password and 403 pages: plain HTML, bilingual, no Dash.

Every value that comes from a request or the database is escaped here; messages are built
with ``bi`` (escaped too).
"""

from __future__ import annotations

import html

CSRF_FIELD = "csrf_token"

LABELS = {
    "title": ("登录", "Sign in"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "submit": ("登录", "Sign in"),
    "bad": ("用户名或密码错误", "Wrong username or password"),
    "throttled": (
        "登录尝试过多，请于 {m} 分钟后重试",
        "Too many sign-in attempts; try again in {m} min",
    ),
    "busy": ("登录繁忙，请稍后重试", "Sign-in is busy; try again in a few seconds"),
    "disabled": ("账户已停用", "Account disabled"),
    "expired": ("会话已过期，请重新登录", "Your session expired; please sign in again"),
    "logged_out": ("已退出登录", "You are signed out"),
    "csrf": ("表单已失效，请重试", "The form expired; please try again"),
    "changed": ("密码已修改", "Password changed"),
    "change_title": ("修改密码", "Change password"),
    "change_required": (
        "首次登录须修改密码",
        "You must change your password before continuing",
    ),
    "current": ("当前密码", "Current password"),
    "new": ("新密码（至少10位）", "New password (at least 10 characters)"),
    "confirm": ("确认新密码", "Confirm new password"),
    "mismatch": ("两次输入的新密码不一致", "The new passwords do not match"),
    "wrong_current": ("当前密码错误", "The current password is wrong"),
    "logout": ("退出登录", "Sign out"),
    "logout_q": ("确定退出登录？", "Sign out now?"),
    "forbidden": ("无权访问此页面", "You may not open this page"),
    "home": ("返回首页", "Back to start"),
    "app": ("GridSight 市域社会治理指挥中心", "GridSight command center"),
}


def page(title: str, body: str) -> str:
    """Return a whole HTML page around ``body`` (the sign-in pages' own small style)."""
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · GridSight</title>
<style>
body{{margin:0;font-family:"Noto Sans CJK SC","Microsoft YaHei",system-ui,sans-serif;
background:#0f1c2e;color:#e8eef6;display:flex;min-height:100vh;align-items:center;
justify-content:center}}
.gs-auth{{background:#17283f;border:1px solid #2b4468;border-radius:8px;padding:28px 32px;
width:340px;box-shadow:0 8px 30px rgba(0,0,0,.4)}}
.gs-auth h1{{font-size:18px;margin:0 0 4px}} .gs-auth .sub{{color:#9fb3cc;font-size:13px;
margin:0 0 18px}} label{{display:block;font-size:13px;margin:12px 0 4px;color:#c8d6e8}}
input[type=text],input[type=password]{{width:100%;box-sizing:border-box;padding:8px 10px;
border-radius:4px;border:1px solid #3a5a86;background:#0f1c2e;color:#fff;font-size:15px}}
button{{margin-top:20px;width:100%;padding:9px;border:0;border-radius:4px;background:#2f7de1;
color:#fff;font-size:15px;cursor:pointer}} .msg{{padding:8px 10px;border-radius:4px;
font-size:13px;margin-bottom:8px}} .err{{background:#5b1f27;color:#ffd5da}}
.info{{background:#1f4a33;color:#d5ffe6}} a{{color:#8cc2ff}}
</style></head><body>{body}</body></html>"""


def bi(key: str, **fmt: str) -> str:
    """Return the escaped "中文 / English" text of ``LABELS[key]``."""
    zh, en = LABELS[key]
    return html.escape(f"{zh.format(**fmt)} / {en.format(**fmt)}")


def forbidden_html(who: str) -> str:
    """Return the 403 page naming ``who`` ("name (role)", or empty)."""
    who = html.escape(who)
    body = (
        f'<div class="gs-auth"><h1>{bi("forbidden")}</h1><p class="sub">{who}</p>'
        f'<p><a href="/">{bi("home")}</a> · <a href="/logout">{bi("logout")}</a></p></div>'
    )
    return page("403", body)


def login_html(
    csrf: str, message: str = "", kind: str = "err", next_url: str = "", username: str = ""
) -> str:
    """Return the sign-in form (``message`` is HTML-escaped already: built with ``bi``)."""
    msg = f'<div class="msg {kind}" id="login-message">{message}</div>' if message else ""
    body = f"""<form class="gs-auth" method="post" action="/login" id="login-form">
<h1>{bi("app")}</h1><p class="sub">{bi("title")}</p>{msg}
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf)}">
<input type="hidden" name="next" value="{html.escape(next_url)}">
<label for="login-username">{bi("username")}</label>
<input type="text" id="login-username" name="username" autocomplete="username"
 value="{html.escape(username)}" required autofocus>
<label for="login-password">{bi("password")}</label>
<input type="password" id="login-password" name="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">{bi("submit")}</button>
</form>"""
    return page("登录 Sign in", body)


def password_html(
    csrf: str, name: str, must_change: bool, message: str = "", kind: str = "err"
) -> str:
    """Return the change-password form of the signed-in ``name``."""
    notice = bi("change_required") if must_change else ""
    msg = f'<div class="msg {kind}" id="password-message">{message}</div>' if message else ""
    body = f"""<form class="gs-auth" method="post" action="/account/password" id="password-form">
<h1>{bi("change_title")}</h1><p class="sub">{html.escape(name)} {notice}</p>{msg}
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf)}">
<label for="password-current">{bi("current")}</label>
<input type="password" id="password-current" name="current" autocomplete="current-password" required>
<label for="password-new">{bi("new")}</label>
<input type="password" id="password-new" name="new" autocomplete="new-password" required>
<label for="password-confirm">{bi("confirm")}</label>
<input type="password" id="password-confirm" name="confirm" autocomplete="new-password" required>
<button type="submit" id="password-submit">{bi("change_title")}</button>
</form>"""
    return page("修改密码 Change password", body)


def logout_html(csrf: str) -> str:
    """Return the sign-out confirmation form (POSTs with the CSRF token)."""
    body = f"""<form class="gs-auth" method="post" action="/logout" id="logout-form">
<h1>{bi("logout_q")}</h1>
<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(csrf)}">
<button type="submit" id="logout-submit">{bi("logout")}</button>
<p><a href="/">{bi("home")}</a></p></form>"""
    return page("退出 Sign out", body)

"""Server-rendered HTML: the login form (the inbox page is rest.handlers.inbox).

Every page carries <meta name="csrf-token">; values are escaped, never interpolated raw.
"""

from __future__ import annotations

from html import escape

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
main {{ max-width: 360px; margin: 12vh auto; background: #fff; padding: 28px 32px;
       border-radius: 10px; box-shadow: 0 4px 24px rgba(0,0,0,.08); }}
h1 {{ font-size: 20px; margin: 0 0 16px; }}
label {{ display: block; margin: 12px 0 4px; font-weight: 600; }}
input {{ width: 100%; box-sizing: border-box; padding: 8px 10px; border: 1px solid #c9ccd1;
        border-radius: 6px; font: inherit; }}
button {{ margin-top: 18px; width: 100%; padding: 9px; border: 0; border-radius: 6px;
         background: #1f6feb; color: #fff; font: inherit; font-weight: 600; cursor: pointer; }}
.error {{ color: #b42318; background: #fef3f2; padding: 8px 10px; border-radius: 6px; }}
</style>
</head>
<body><main>{body}</main></body>
</html>
"""


def login_page(csrf: str, error: str | None = None, email: str = "", next_url: str = "") -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""<h1>Sign in to the inbox</h1>{err}
<form method="post" action="/auth/login">
<input type="hidden" name="csrf_token" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(next_url)}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{escape(email)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"""
    return _BASE.format(csrf=escape(csrf), title="Sign in", body=body)

"""``rhizome users …``: the users of a shared server, their roles and API tokens.

A token is printed once, when it is issued; the database keeps only its SHA-256. Once a
user exists, the web server asks every request for a token (or the login page's cookie),
also on loopback."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from rhizome.app import App
from rhizome.auth import ROLES, Users
from rhizome.cli_output import Table, console
from rhizome.config import load_settings
from rhizome.logs import setup_logging

out = console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = console(stderr=True)

users_app = typer.Typer(
    help="Users of a shared server: add, list, issue and revoke API tokens, roles.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
NameArg = Annotated[str, typer.Argument(help="The user name (its user_id everywhere).")]
TokenNameOpt = Annotated[
    str | None, typer.Option("--name", help="A label for the token, e.g. 'laptop'.")
]


def _users() -> tuple[App, Users]:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    app = App(settings)
    return app, Users(app.store)


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _show_token(user: str, role: str, token_id: str, token: str, as_json: bool) -> None:
    if as_json:
        _emit({"user": user, "role": role, "token_id": token_id, "token": token})
        return
    err.print(f"[bold]{user}[/bold] ({role}) — token {token_id}. It is shown only this once:")
    out.print(token, highlight=False)
    err.print("Send it as 'Authorization: Bearer <token>', or sign in with it at /login.")


@users_app.command("add")
def users_add(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", help="admin or user.")] = "user",
    token_name: TokenNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user with a first API token (printed once)."""
    app, users = _users()
    try:
        issued = users.add(name, role, token_name)
    finally:
        app.close()
    _show_token(issued.user, issued.role, issued.token_id, issued.token, as_json)


@users_app.command("token")
def users_token(name: NameArg, token_name: TokenNameOpt = None, as_json: JsonOpt = False) -> None:
    """Issue another API token for a user (printed once)."""
    app, users = _users()
    try:
        issued = users.issue(name, token_name)
    finally:
        app.close()
    _show_token(issued.user, issued.role, issued.token_id, issued.token, as_json)


@users_app.command("revoke")
def users_revoke(
    name: NameArg,
    token_id: Annotated[
        str | None, typer.Option("--token", help="Only this token (its id, tok_…).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke every API token of a user (or one). Servers stop accepting them within a
    few seconds."""
    app, users = _users()
    try:
        revoked = users.revoke(name, token_id)
    finally:
        app.close()
    if as_json:
        _emit({"user": name, "revoked": revoked})
    else:
        out.print(f"revoked {len(revoked)} token(s) of {name}")


@users_app.command("role")
def users_role(
    name: NameArg,
    role: Annotated[str, typer.Argument(help="admin or user.")],
    as_json: JsonOpt = False,
) -> None:
    """Change a user's role."""
    app, users = _users()
    try:
        users.set_role(name, role)
    finally:
        app.close()
    if as_json:
        _emit({"user": name, "role": role})
    else:
        out.print(f"{name} is now {role}")


@users_app.command("list")
def users_list(
    tokens: Annotated[bool, typer.Option("--tokens", help="Also list each user's tokens.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Users with their roles, active tokens and last use."""
    app, users = _users()
    try:
        rows = users.all()
        if tokens:
            for row in rows:
                row["tokens"] = users.tokens(row["user"])
    finally:
        app.close()
    if as_json:
        _emit({"users": rows})
        return
    if not rows:
        out.print(
            "no users: the server serves the local admin on loopback "
            f"(add one with `rhizome users add NAME --role {'|'.join(ROLES)}`)"
        )
        return
    table = Table("user", "role", "active tokens", "last used", "created")
    for row in rows:
        table.add_row(
            row["user"],
            row["role"],
            str(row["active_tokens"]),
            row["last_used_at"] or "—",
            row["created_at"] or "",
        )
    out.print(table)
    if tokens:
        for row in rows:
            for t in row["tokens"]:
                state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
                out.print(f"{row['user']}  {t['id']}  {t['name'] or ''}  {state}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")

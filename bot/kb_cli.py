"""``yezhu kb``: the knowledge base in the database (import, export, ask) plus the file tools of
``knowledge.cli`` (validate, evaluate)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bot.settings import Settings

app = typer.Typer(help="The knowledge base: import, export, ask.", no_args_is_help=True)


def _db() -> object:
    from bot.store.db import Database

    return Database(Settings().database_url)


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="Knowledge-base YAML file")]) -> None:
    """Load entries from YAML into the database (upsert by id); the running bot picks them up on reload."""
    from knowledge.schema import KnowledgeFormatError, load_yaml

    try:
        items = load_yaml(file)
    except (KnowledgeFormatError, OSError) as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def run() -> tuple[int, int]:
        from actions.knowledge import import_items

        db = _db()
        try:
            await db.migrate()  # type: ignore[attr-defined]
            async with db.session() as s, s.begin():  # type: ignore[attr-defined]
                return await import_items(s, items)
        finally:
            await db.close()  # type: ignore[attr-defined]

    created, updated = asyncio.run(run())
    typer.echo(f"{len(items)} entries read: {created} created, {updated} updated, "
               f"{len(items) - created - updated} unchanged.")


@app.command()
def export(file: Annotated[Path, typer.Argument(help="Where to write the YAML ('-' for stdout)")]) -> None:
    """Write every entry in the database as knowledge-base YAML."""
    from knowledge.schema import dump_yaml

    async def run() -> str:
        from actions.knowledge import export_items

        db = _db()
        try:
            async with db.session() as s:  # type: ignore[attr-defined]
                return dump_yaml(await export_items(s))
        finally:
            await db.close()  # type: ignore[attr-defined]

    text = asyncio.run(run())
    if str(file) == "-":
        typer.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        typer.echo(f"written to {file}")


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="An owner's question")],
    project: Annotated[str | None, typer.Option(help="Project code for scoped entries")] = "demo",
    k: Annotated[int, typer.Option(help="How many candidates")] = 3,
) -> None:
    """The best knowledge-base answers for TEXT, with scores (from the database)."""

    async def run() -> None:
        from actions.knowledge import KnowledgeService

        db = _db()
        try:
            service = KnowledgeService(db)  # type: ignore[arg-type]
            count = await service.reload()
            if count == 0:
                typer.echo("The knowledge base is empty: run `yezhu demo` or `yezhu kb import FILE`.", err=True)
                raise typer.Exit(1)
            index = await service.ensure()
            answer = index.answer(text, project, k=k)
            typer.echo(f"decision: {answer.decision}  confidence: {answer.confidence:.2f}")
            for n, hit in enumerate(answer.hits, 1):
                typer.echo(f"{n}. [{hit.item_id}] score={hit.score:.2f} confidence={hit.confidence:.2f}  {hit.question}")
            if answer.decision != "unknown":
                typer.echo("\n" + answer.render())
        finally:
            await db.close()  # type: ignore[attr-defined]

    asyncio.run(run())


try:  # validate / evaluate work on files, without a database
    from knowledge.cli import app as _files_app

    for _command in _files_app.registered_commands:
        if _command.name not in {"ask", "import", "export"} and getattr(_command.callback, "__name__", "") not in {
            "ask"
        }:
            app.registered_commands.append(_command)
except ImportError:
    pass

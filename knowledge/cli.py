"""File-based knowledge-base tools: ``ask``, ``validate``, ``evaluate`` (no database needed).

``bot`` mounts these under ``yezhu kb`` next to the database-backed ``import``/``export``; they also
run on their own: ``python -m knowledge.cli ask 房本什么时候能领``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from knowledge import DEMO_KB, DEMO_PARAPHRASES, DEMO_SYNONYMS
from knowledge.evaluate import evaluate as run_evaluation
from knowledge.retrieval import KnowledgeIndex
from knowledge.schema import KnowledgeFormatError, load_synonyms, load_yaml
from knowledge.text import default_tokenizer

app = typer.Typer(help="Knowledge-base files: ask, validate, evaluate.", no_args_is_help=True)

KbOption = Annotated[Path, typer.Option("--kb", help="Knowledge-base YAML file")]
SynonymsOption = Annotated[Path | None, typer.Option("--synonyms", help="Synonym YAML file ('' for none)")]


def _index(kb: Path, synonyms: Path | None) -> KnowledgeIndex:
    try:
        items = load_yaml(kb)
        groups = load_synonyms(synonyms) if synonyms and str(synonyms) else []
    except (KnowledgeFormatError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    default_tokenizer("预热")  # load jieba's dictionary first, so build_seconds is the build alone
    return KnowledgeIndex.build(items, groups)


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="An owner's question")],
    project: Annotated[str | None, typer.Option(help="The owner's project code ('' for none)")] = "demo",
    k: Annotated[int, typer.Option(help="How many candidates to show")] = 3,
    kb: KbOption = DEMO_KB,
    synonyms: SynonymsOption = DEMO_SYNONYMS,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text")] = False,
) -> None:
    """The best knowledge-base answers for TEXT, with scores and the decision."""
    index = _index(kb, synonyms)
    answer = index.answer(text, project or None, k=k)
    if as_json:
        payload = {
            "query": text,
            "project": answer.project,
            "decision": answer.decision,
            "confidence": answer.confidence,
            "hits": [hit.__dict__ for hit in answer.hits],
            "choices": [hit.item_id for hit in answer.choices],
            "reply": answer.render(),
        }
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    typer.echo(
        f"decision: {answer.decision}  confidence: {answer.confidence:.2f}  ({answer.elapsed_ms:.2f} ms)"
    )
    for number, hit in enumerate(answer.hits, 1):
        typer.echo(
            f"{number}. [{hit.item_id}] score={hit.score:.2f} confidence={hit.confidence:.2f}  "
            f"{hit.question}  (matched: {hit.matched})"
        )
    typer.echo("")
    typer.echo(answer.render())


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="A knowledge-base or synonym YAML file")]) -> None:
    """Check a knowledge-base file (or a synonym file) and report every problem found."""
    try:
        text = file.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        if isinstance(data, dict) and "synonyms" in data:
            groups = load_synonyms(text)
            typer.echo(f"{file}: OK, {len(groups)} synonym groups")
            return
        items = load_yaml(text)
    except KnowledgeFormatError as exc:
        typer.echo(f"{file}: {len(exc.errors)} problem(s)", err=True)
        for error in exc.errors:
            typer.echo(f"  - {error}", err=True)
        raise typer.Exit(1) from exc
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    phrasings = sum(len(item.phrasings) for item in items)
    scoped = sum(1 for item in items if item.projects)
    typer.echo(f"{file}: OK, {len(items)} entries, {phrasings} phrasings, {scoped} scoped to projects")


@app.command()
def evaluate(
    file: Annotated[Path, typer.Argument(help="Paraphrase test file")] = DEMO_PARAPHRASES,
    kb: KbOption = DEMO_KB,
    synonyms: SynonymsOption = DEMO_SYNONYMS,
    project: Annotated[str | None, typer.Option(help="Override the file's project")] = None,
    threshold: Annotated[float | None, typer.Option(help="Override the confidence threshold")] = None,
    min_top1: Annotated[float, typer.Option(help="Exit with status 1 below this top-1 accuracy")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON")] = False,
) -> None:
    """Top-1/top-3 accuracy, decisions and out-of-scope rejection on a held-out paraphrase set."""
    index = _index(kb, synonyms)
    try:
        report = run_evaluation(index, file, project=project, threshold=threshold)
    except (KnowledgeFormatError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(f"knowledge base: {kb} ({len(index)} entries, index built in {index.build_seconds:.2f} s)")
        typer.echo(report.format())
    if report.top1 < min_top1:
        typer.echo(f"top-1 accuracy {report.top1:.1%} is below {min_top1:.1%}", err=True)
        raise typer.Exit(1)


@app.command()
def bench(
    entries: Annotated[int, typer.Option(help="Size of the synthetic knowledge base")] = 1000,
    kb: KbOption = DEMO_KB,
    synonyms: SynonymsOption = DEMO_SYNONYMS,
) -> None:
    """Time building and querying an index of ENTRIES entries made from the knowledge base."""
    from knowledge.bench import benchmark

    try:
        items = load_yaml(kb)
        groups = load_synonyms(synonyms) if synonyms and str(synonyms) else []
    except (KnowledgeFormatError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(benchmark(items, groups, n=entries).format())


if __name__ == "__main__":
    app()

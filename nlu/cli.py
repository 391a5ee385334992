"""``yezhu nlu …`` commands: train, parse, test, export-rasa.

This module owns the command-line surface of the NLU package; the lead mounts ``app`` under
``yezhu nlu``. ``parse`` is a filter (one message per stdin line → one JSON object per stdout line),
so it composes with shell pipes and test harnesses.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(help="Yezhu NLU: train, parse, evaluate, export to Rasa.", no_args_is_help=True)

ModelOpt = Annotated[Path | None, typer.Option("--model", help="Model directory (default: the shipped nlu/model).")]


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Training data: a Rasa NLU YAML file or a directory of them.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the model (default: nlu/model).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (cross-validation folds, solver).")] = 13,
) -> None:
    """Train the intent model from nlu/data/nlu/*.yml and write it as .npz + .json."""
    from nlu.train import train as run_training

    report = run_training(data, out, seed=seed)
    typer.echo(f"trained on {report.examples} examples, {len(report.intents)} intents, "
               f"{report.features} features in {report.seconds:.1f} s → {report.model_dir}")
    typer.echo(f"5-fold CV: accuracy {report.cv_accuracy:.3f}, macro-F1 {report.cv_macro_f1:.3f}, "
               f"ECE {report.cv_ece_raw:.3f} → {report.cv_ece_calibrated:.3f} (temperature {report.temperature:.3f})")


@app.command()
def parse(
    model: ModelOpt = None,
    backend: Annotated[str | None, typer.Option(help="yezhu or rasa (default: YEZHU_NLU_BACKEND or yezhu).")] = None,
    rasa_url: Annotated[str | None, typer.Option(help="Rasa server URL (default: YEZHU_RASA_URL).")] = None,
    now: Annotated[str | None, typer.Option(help="Reference time for relative dates, ISO 8601.")] = None,
) -> None:
    """Parse messages: one per line on stdin, one JSON object per line on stdout."""
    import os

    from nlu.pipeline import load_interpreter

    chosen = (backend or os.environ.get("YEZHU_NLU_BACKEND") or "yezhu").strip().lower()
    url = rasa_url or os.environ.get("YEZHU_RASA_URL") or None
    try:
        interpreter = load_interpreter(chosen, url, model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    reference = datetime.fromisoformat(now) if now else None
    lines = [line.rstrip("\r\n") for line in sys.stdin]

    async def run_async() -> None:
        for line in lines:
            result = await interpreter.aparse(line, reference)
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))

    if interpreter.backend == "rasa":
        asyncio.run(run_async())
    else:
        for line in lines:
            typer.echo(json.dumps(interpreter.parse(line, reference).to_dict(), ensure_ascii=False))


@app.command("test")
def test_command(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Rasa NLU YAML files to evaluate on (default: the held-out set and the real-register set).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report directory (one sub-directory per file).")] = Path("reports/nlu"),
    model: ModelOpt = None,
    emergencies: Annotated[bool, typer.Option(help="Also measure emergency recall and false alarms.")] = True,
) -> None:
    """Evaluate intents (and topics, where labelled) on each FILE; write intent_report.json,
    intent_confusion_matrix.png, intent_errors.json (like `rasa test nlu`) and topic_report.json per
    file; print per-class tables and the confusion matrix; then the emergency recall."""
    from nlu.data_io import REAL_REGISTER_FILE, TEST_FILE, load_examples
    from nlu.evaluate import (
        evaluate,
        evaluate_emergencies,
        format_confusion,
        format_emergencies,
        format_table,
        format_topics,
        write_report,
    )
    from nlu.pipeline import load_interpreter

    chosen = list(files) if files else [TEST_FILE, REAL_REGISTER_FILE]
    for file in chosen:
        if not file.is_file():
            raise typer.BadParameter(f"no such file: {file}")
    interpreter = load_interpreter("yezhu", None, model)
    for file in chosen:
        examples = load_examples(file)
        if not examples:
            raise typer.BadParameter(f"no intent examples in {file}")
        result = evaluate(examples, interpreter)
        target = out / file.stem if len(chosen) > 1 else out
        paths = write_report(result, target)
        typer.echo(f"== {file.name}: {len(examples)} examples")
        typer.echo(format_table(result.report))
        typer.echo(format_confusion(result))
        if result.topic_report is not None:
            typer.echo(format_topics(result.topic_report))
        typer.echo(f"{len(result.errors)} errors; report written to {target}: " + ", ".join(p.name for p in paths))
    if emergencies:
        from nlu.data_io import EMERGENCY_FILES

        typer.echo("== emergencies: " + ", ".join(p.name for p in EMERGENCY_FILES))
        typer.echo(format_emergencies(evaluate_emergencies(list(EMERGENCY_FILES), interpreter)))


@app.command("export-rasa")
def export_rasa_command(
    directory: Annotated[Path, typer.Argument(help="Output directory for the Rasa project.")],
) -> None:
    """Write a Rasa 3.x project (config.yml, data/nlu.yml, domain.yml) from Yezhu's training data."""
    from nlu.export import export_rasa

    for path in export_rasa(directory):
        typer.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    app()

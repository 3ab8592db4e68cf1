"""`reportgen pacs echo | find | pull | push | watch`: the bridge to the hospital's PACS.

Where the PACS is comes from options or the environment (REPORTGEN_PACS_HOST, _PORT,
_AET, and REPORTGEN_AET for us), so a site sets it once.
"""

from __future__ import annotations

from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option, template_option
from reportgen.errors import ConfigError

pacs_app = typer.Typer(
    help="Pull studies from a PACS, push drafts (DICOM SR/SEG) back, or watch it.",
    no_args_is_help=True,
)
app.add_typer(pacs_app, name="pacs")

HOST = typer.Option("127.0.0.1", "--host", envvar="REPORTGEN_PACS_HOST", help="PACS address.")
PORT = typer.Option(4242, "--port", envvar="REPORTGEN_PACS_PORT", help="PACS DICOM port.")
CALLED = typer.Option("ORTHANC", "--aet", envvar="REPORTGEN_PACS_AET", help="PACS AE title.")
CALLING = typer.Option("REPORTGEN", "--calling-aet", envvar="REPORTGEN_AET", help="Our AE title.")


def _node(host: str, port: int, aet: str, calling_aet: str):
    from reportgen.pacs.dimse import PacsNode

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, not {port}")
    for name, title in (("--aet", aet), ("--calling-aet", calling_aet)):
        if not 0 < len(title) <= 16 or "\\" in title:
            raise ConfigError(f"{name} must be 1-16 characters (a DICOM AE title), not {title!r}")
    return PacsNode(host, port, aet, calling_aet)


@pacs_app.command("echo")
def echo_command(
    host: str = HOST, port: int = PORT, aet: str = CALLED, calling_aet: str = CALLING
) -> None:
    """Check that the PACS answers and accepts us (C-ECHO)."""
    from reportgen.pacs.dimse import echo

    node = _node(host, port, aet, calling_aet)
    echo(node)
    typer.echo(f"{node} answers")


@pacs_app.command("find")
def find_command(
    host: str = HOST, port: int = PORT, aet: str = CALLED, calling_aet: str = CALLING
) -> None:
    """List the PACS's studies (C-FIND): UID, modalities, number of instances."""
    from reportgen.pacs.dimse import find_studies

    for found in find_studies(_node(host, port, aet, calling_aet)):
        modalities = found.get("ModalitiesInStudy", "")
        modalities = modalities if isinstance(modalities, str) else "\\".join(modalities)
        count = found.get("NumberOfStudyRelatedInstances", "")
        typer.echo(f"{found.StudyInstanceUID}\t{modalities}\t{count}")


@pacs_app.command("pull")
def pull_command(
    study: str = typer.Option(..., "--study", help="The StudyInstanceUID to pull."),
    out: Path = out_option("New study folder (de-identified NIfTI)."),
    keep_dicom: Path = typer.Option(
        None,
        "--keep-dicom",
        help="Also keep the DICOM here (it carries identifiers; DICOM SR/SEG need it).",
    ),
    host: str = HOST,
    port: int = PORT,
    aet: str = CALLED,
    calling_aet: str = CALLING,
) -> None:
    """Pull one study (C-GET) into the study-folder form, through ingest's de-identification."""
    from reportgen.pacs.pull import pull_study

    pulled = pull_study(_node(host, port, aet, calling_aet), study, out, keep_dicom)
    for item in pulled.skipped:
        typer.echo(f"skipped series {item['series_number']}: {item['reason']}", err=True)
    typer.echo(
        f"pulled {pulled.instances} instances; wrote {len(pulled.files)} volume(s) of "
        f"{pulled.study_id} to {out}"
    )


@pacs_app.command("push")
def push_command(
    files: list[Path] = typer.Argument(..., help="DICOM files or folders (e.g. a DICOM SR)."),
    host: str = HOST,
    port: int = PORT,
    aet: str = CALLED,
    calling_aet: str = CALLING,
) -> None:
    """Store DICOM files on the PACS (C-STORE)."""
    from reportgen.errors import InputError
    from reportgen.pacs.dimse import store

    missing = [f for f in files if not f.exists()]
    if missing:
        raise InputError(missing[0], "no such file or folder")
    node = _node(host, port, aet, calling_aet)
    typer.echo(f"stored {store(node, files)} instance(s) on {node}")


@pacs_app.command("watch")
def watch_command(
    state: Path = typer.Option(
        Path("reportgen-watch.sqlite"), "--state", help="What was drafted, refused or retried."
    ),
    model: Path = typer.Option(None, "--model", help="Model directory (default: by anatomy)."),
    template: str = template_option("Draft with this bundled model."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between polls."),
    polls: int = typer.Option(0, "--polls", help="Stop after N polls (0: run until Ctrl-C)."),
    settle_polls: int = typer.Option(
        1, "--settle-polls", help="Polls a study's instance count must stay unchanged first."
    ),
    max_attempts: int = typer.Option(5, "--max-attempts", help="Tries before giving up."),
    host: str = HOST,
    port: int = PORT,
    aet: str = CALLED,
    calling_aet: str = CALLING,
) -> None:
    """Draft each new MR study on the PACS and store its DICOM SR back into the study."""
    from reportgen import NOT_FOR_CLINICAL_USE
    from reportgen.model.generators import GeneratorChoice
    from reportgen.pacs.watch import Watcher, WatchState

    if interval < 0 or polls < 0 or settle_polls < 0 or max_attempts < 1:
        raise ConfigError("--interval, --polls, --settle-polls must be >= 0, --max-attempts >= 1")
    node = _node(host, port, aet, calling_aet)
    watch_state = WatchState(state)
    typer.echo(NOT_FOR_CLINICAL_USE, err=True)
    typer.echo(f"watching {node} every {interval:g} s (state: {state})", err=True)
    try:
        Watcher(
            node,
            watch_state,
            GeneratorChoice(model, template),
            settle_polls=settle_polls,
            max_attempts=max_attempts,
            report=lambda line: typer.echo(line, err=True),
        ).run(interval, polls or None)
    finally:
        counts = watch_state.counts()
        watch_state.close()
    typer.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no study")

"""`reportgen ontology ...`: look terms up, rebuild the OWL file, import SNOMED CT RF2."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option

ontology_app = typer.Typer(
    help="Terminology: look up terms, rebuild the OWL file, load SNOMED CT RF2.",
    no_args_is_help=True,
)
app.add_typer(ontology_app, name="ontology")


@ontology_app.command("lookup")
def lookup(term: str = typer.Argument(..., help="A term in English or Chinese.")) -> None:
    """Normalise a term to its concept: codes, preferred terms, ancestors, template fields."""
    from reportgen.report.knowledge import knowledge_graph

    kg = knowledge_graph()
    found = sorted(kg.candidates(term))
    if not found:
        typer.echo(f"no concept for {term!r}")
        raise typer.Exit(1)
    for cid in found:
        node = kg.g.nodes[cid]
        typer.echo(
            json.dumps(
                {
                    "concept": cid,
                    "en": node["en"][0] if node["en"] else None,
                    "zh": node["zh"][0] if node["zh"] else None,
                    "codes": node["codes"],
                    "ancestors": sorted(kg.ancestors(cid)),
                    "fills": kg.fields_for(cid),
                },
                ensure_ascii=False,
            )
        )


@ontology_app.command("build-owl")
def build_owl(
    out: Path = out_option(
        "Where to write (default: the shipped ontology/reportgen.owl).", default=None
    ),
) -> None:
    """Rebuild the OWL ontology from the concept files."""
    from ontology.owl import OWL_FILE, write_owl

    typer.echo(f"wrote {write_owl(out or OWL_FILE)}")


@ontology_app.command("import-rf2")
def import_rf2(
    snapshot: Path = typer.Argument(
        ..., help="RF2 Snapshot folder of a licensed SNOMED CT release."
    ),
    root: list[str] = typer.Option(
        ..., "--root", help="Keep the subtree under this concept id (repeatable)."
    ),
    out: Path = out_option("Graph extension (JSON) to write."),
) -> None:
    """Load SNOMED CT subtrees into a graph extension (use it via REPORTGEN_GRAPH_EXTENSIONS)."""
    from ontology.concepts import default_concepts
    from ontology.rf2 import extension_graph, load_rf2, save_extension

    snap = load_rf2(snapshot, list(root))
    known = {c.snomed.code: c.id for c in default_concepts().values() if c.snomed}
    g = extension_graph(snap, known)
    save_extension(g, out)
    merged = sum(1 for sctid in snap["concepts"] if sctid in known)
    typer.echo(
        f"wrote {out}: {len(snap['concepts'])} concepts ({merged} merged into existing concepts), {g.number_of_edges()} relations"
    )

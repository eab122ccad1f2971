"""Rule checks on unified trajectories, in the spirit of APIGen's format checker.

Pure code (no Lightning, no Hydra). :class:`Verifier` checks one trajectory and returns the
named rules it breaks; :func:`verify_file` streams a file through it, writes good
trajectories and rejects (rule, message, provenance, original record) and counts both per
source and rule. ``read == good + rejected`` always: every record ends up in one file.

Argument checks use ``jsonschema``. Validators are compiled once per distinct schema and
cached; for the keywords tool schemas actually use (``type``, ``properties``, ``required``,
``enum``, ``items``, bounds...) the cache also holds a compiled Python predicate with the
same semantics, because ``jsonschema``'s generic ``is_valid`` costs ~50 µs a call, more than
everything else per record. Any other keyword goes to ``jsonschema`` itself, and messages
always come from ``jsonschema``.

The package, one job a module: :mod:`.compiler` (the fast argument predicate),
:mod:`.schemas` (meta-check, validators and their cache), :mod:`.ids` (the seen-id set),
:mod:`.rules` (the rules and :class:`Verifier`), :mod:`.report` (counts per source and
rule) and :mod:`.runner` (:func:`verify_file`).
"""

from __future__ import annotations

from xlam.data.verify.compiler import compile_predicate
from xlam.data.verify.ids import IdSet
from xlam.data.verify.report import SourceCounts, VerifyReport
from xlam.data.verify.rules import RULES, Verifier, Violation, count_tokens, trajectory_text
from xlam.data.verify.runner import UNKNOWN_SOURCE, reject_record, verify_file
from xlam.data.verify.schemas import SchemaCache, SchemaEntry, build_entry, meta_valid_fast

__all__ = [
    "RULES",
    "UNKNOWN_SOURCE",
    "IdSet",
    "SchemaCache",
    "SchemaEntry",
    "SourceCounts",
    "Verifier",
    "VerifyReport",
    "Violation",
    "build_entry",
    "compile_predicate",
    "count_tokens",
    "meta_valid_fast",
    "reject_record",
    "trajectory_text",
    "verify_file",
]

"""DPO: losses against hand computation, the references, learning, chaining, strategies, resume.

Pairs are made from the synthetic tool tasks (``xlam.synth``): the chosen message is the
gold first call turn, the rejected one the same turn calling a tool that does not exist
(``<name>_legacy``), or another tool of the task for the exactness tests. (The replay-proven
pairs of ``xlam.synth.pairs`` are harder, above all ``wrong_value``, which needs a model that
copies: ``scripts/bench_dpo_heldout.py`` measures them, docs/training.md#dpo.)
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ENV, TINY_QWEN2, XLAM_TRAIN, step_metrics, train_small
from test_train_strategies import COMMON, _assert_same_steps

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.collate import packed_collate
from xlam.data.labels import IGNORE_INDEX
from xlam.data.preference import PreferencePair, pair_at, read_pairs, write_pairs
from xlam.data.schema import Trajectory


def make_pairs(n: int, split: str, other_tool: bool = False) -> list[PreferencePair]:
    """One pair per synthetic task with a call: gold call turn vs a wrong tool name."""
    from xlam.synth.generate import generate

    out = []
    for d in generate(n, 0, split):
        t = Trajectory.from_dict(d)
        names = [f["function"]["name"] for f in t.tools]
        i = next(
            (k for k, m in enumerate(t.conversation) if m.role == "assistant" and m.tool_calls),
            None,
        )
        if i is None:
            continue
        rejected = copy.deepcopy(t.conversation[i])
        call = rejected.tool_calls[0]
        others = [x for x in names if x != call.name]
        call.name = others[0] if other_tool and others else f"{call.name}_legacy"
        out.append(pair_at(t, i, rejected, f"{t.id}:{i}"))
    return out


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pairs")
    files = {"train": d / "train.jsonl", "test": d / "test.jsonl"}
    write_pairs(make_pairs(48, "train"), files["train"])
    write_pairs(make_pairs(40, "test"), files["test"])
    return files


def pairs_source(path: Path) -> str:
    return f"data.sources={{pairs: {{path: {path}, format: pairs}}}}"


# -- exactness against hand computation ------------------------------------------------
TINY = [f"model.from_config.{k}={v}" for k, v in TINY_QWEN2.items()]
SAMPLE = str(SAMPLE_DATA_DIR / "fc_single.jsonl")


def _module(tmp: Path, *overrides: str):
    from xlam.train import instantiate_module
    from xlam.utils.hydra import compose_config

    cfg = compose_config(["objective=dpo", *TINY, *overrides], output_dir=tmp)
    module = instantiate_module(cfg)
    module.configure_model()
    return module


def _rendered(tokenizer, n: int = 4) -> list[dict]:
    from xlam.data.render import Renderer, RenderOptions
    from xlam.data.render.pairs import render_pair

    renderer = Renderer(tokenizer, RenderOptions(mode="per_turn"))
    samples = [render_pair(renderer, p) for p in make_pairs(12, "train", other_tool=True)]
    samples.sort(key=lambda s: len(s.input_ids))  # short: fast, and small sums
    return [
        {"id": s.id, "source": "t", "input_ids": s.input_ids, "labels": s.labels, "split": s.split}
        for s in samples[:n]
    ]


def hand_logps(model: torch.nn.Module, sample: dict) -> torch.Tensor:
    """``(2,)`` summed log-probs of each half, each run alone (no packing), by hand."""
    out = []
    cut = sample["split"]
    for a, b in ((0, cut), (cut, len(sample["input_ids"]))):
        ids = torch.tensor([list(sample["input_ids"][a:b])])
        labels = torch.tensor(list(sample["labels"][a:b]))
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        target = labels[1:]
        keep = target != IGNORE_INDEX
        out.append(logp[keep].gather(1, target[keep, None]).double().sum())
    return torch.stack(out)


def _perturb(model: torch.nn.Module, seed: int = 1, only: str = "") -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only in name:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)


@pytest.mark.parametrize(
    ("loss", "extra"),
    [("sigmoid", ["objective.label_smoothing=0.1"]), ("ipo", []), ("simpo", [])],
)
def test_loss_equals_hand_computation(
    loss: str, extra: list[str], tmp_path: Path, tiny_tokenizer
) -> None:
    beta, gamma, eps = 0.1, 0.5, 0.1 if extra else 0.0
    module = _module(
        tmp_path, f"objective.loss={loss}", "objective.reference=frozen_copy", *extra
    ).double()
    assert (module._ref_model is None) == (loss == "simpo")  # SimPO needs no reference
    if module._ref_model is not None:
        module._ref_model.double()
    _perturb(module.model)  # the policy moves away from its frozen copy
    samples = _rendered(tiny_tokenizer)
    batch = packed_collate([samples[:2], samples[2:]], pad_id=0)  # two pairs a row
    out = module.pair_step(batch)

    want = []
    for s in samples:
        pol = hand_logps(module.model, s)
        if loss == "simpo":
            halves = ((0, s["split"]), (s["split"], len(s["labels"])))
            n = [sum(1 for x in s["labels"][a + 1 : b] if x != IGNORE_INDEX) for a, b in halves]
            z = float(beta * (pol[0] / n[0] - pol[1] / n[1]) - gamma)
            want.append(-math.log(1 / (1 + math.exp(-z))))
            continue
        ref = hand_logps(module._ref_model, s)
        h = float((pol[0] - ref[0]) - (pol[1] - ref[1]))
        if loss == "ipo":
            want.append((h - 1 / (2 * beta)) ** 2)
        else:
            sig = 1 / (1 + math.exp(-beta * h))
            want.append(-(1 - eps) * math.log(sig) - eps * math.log(1 - sig))
        assert torch.allclose(out["logps"][len(want) - 1], pol, rtol=1e-6, atol=0)
    got = out["losses"].tolist()
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6), (got, want)
    assert len(set(got)) == len(got)  # four different pairs, not one value repeated


def test_shared_history_gives_the_separate_halves_log_probs(tmp_path: Path, tiny_tokenizer) -> None:
    """A pair with its history once (``shared_history``, xlam_segments) scores each side as
    the side run alone does, in fewer tokens."""
    from xlam.data.render import Renderer, RenderOptions
    from xlam.data.render.pairs import render_pair

    module = _module(
        tmp_path, "model.attn_implementation=xlam_segments", "objective.reference=frozen_copy"
    ).double()
    _perturb(module.model)
    pairs = make_pairs(12, "train", other_tool=True)[:6]
    rendered = {}
    for shared in (False, True):
        opts = RenderOptions(mode="per_turn", shared_history=shared)
        rendered[shared] = [vars(render_pair(Renderer(tiny_tokenizer, opts), p)) for p in pairs]
    samples = [{**s, "source": "t"} for s in rendered[True]]
    for full, one in zip(rendered[False], rendered[True], strict=True):
        assert one["branch"] > 100  # the history (tools, query) is most of a pair
        assert len(one["input_ids"]) == len(full["input_ids"]) - one["branch"]
    # Three pairs a row: a branch after other pairs, and pairs after a branch.
    out = module.pair_step(packed_collate([samples[:3], samples[3:]], pad_id=0))
    for k, full in enumerate(rendered[False]):
        want = hand_logps(module.model, full)
        assert torch.allclose(out["logps"][k], want, rtol=1e-9, atol=0), (k, out["logps"][k], want)
    rejected = [out["logps"][k, 1] for k in range(len(pairs))]
    assert len(set(rejected)) == len(rejected)


def test_lora_disabled_reference_is_the_frozen_base(tmp_path: Path, tiny_tokenizer) -> None:
    from xlam.models.components.build import build_causal_lm

    module = _module(tmp_path, "model.lora.enabled=true", "objective.reference=lora_disabled")
    assert module.reference == "lora_disabled" and module._ref_model is None
    _perturb(module.model, only="lora_")  # trained adapters: the policy is not the base
    samples = _rendered(tiny_tokenizer, 2)
    batch = packed_collate([samples], pad_id=0)
    hp = module.hparams
    base = build_causal_lm(None, len(tiny_tokenizer), hp.from_config, "float32", "sdpa", hp.seed)
    ref = module.reference_logps(batch)
    explicit = torch.stack([hand_logps(base.eval(), s) for s in samples])
    assert torch.allclose(ref, explicit, rtol=1e-5, atol=1e-4), (ref, explicit)
    policy = module.pair_step(batch)["logps"]
    assert not torch.allclose(policy, ref, atol=1e-2)  # the adapters were on for the policy


def test_refusals_say_what_to_change(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    from types import SimpleNamespace

    from hydra.errors import InstantiationException
    from lightning.pytorch.strategies import FSDPStrategy

    from xlam.data.datamodule import TrajectoryDataModule
    from xlam.models.dpo import DPOModule

    with pytest.raises(InstantiationException, match=r"needs model\.lora\.enabled=true"):
        _module(tmp_path, "objective.reference=lora_disabled")
    with pytest.raises(InstantiationException, match=r"leave model\.copy_weight=1"):
        _module(tmp_path, "model.copy_weight=10")
    module = DPOModule(from_config=TINY_QWEN2, tokenizer_path=TINY_TOKENIZER_DIR, objective={})
    assert module.reference == "frozen_copy"  # auto without LoRA
    fsdp = FSDPStrategy.__new__(FSDPStrategy)  # only its type is read
    module._trainer = SimpleNamespace(strategy=fsdp, precision=None)
    with pytest.raises(ValueError, match=r"\(FSDP\): use objective\.reference=precomputed"):
        module.configure_model()  # a sharded model cannot be copied
    mixed = {"p": {"path": str(pair_files["train"]), "format": "pairs"}, "t": {"path": SAMPLE}}
    with pytest.raises(ValueError, match="mixes preference pairs"):
        TrajectoryDataModule(mixed, TINY_TOKENIZER_DIR, keep_samples=True)
    with pytest.raises(ValueError, match="trains on preference pairs"):
        module.pair_step({"input_ids": torch.zeros(1, 2, dtype=torch.long)})


# -- training: SFT -> DPO from the run dir, held-out accuracy, precomputed reference, resume
DPO = [
    "objective=dpo",
    "data.packing.seq_length=2048",
    "data.val_size=0",
    "model.optimizer.lr=5e-3",
    "trainer.max_steps=4",
    "callbacks.model_checkpoint.every_n_train_steps=2",
]


def heldout_accuracy(module, reference: torch.nn.Module, samples: list[dict]) -> float:
    """Share of pairs whose chosen side gains more log-prob over ``reference`` (a model)."""
    # The frozen-copy path, whose log-probs equal the hand computation (tests above).
    module.reference = "frozen_copy"
    object.__setattr__(module, "_ref_model", reference)
    rows = [samples[i : i + 2] for i in range(0, len(samples), 2)]
    with torch.no_grad():
        rewards = module.eval().pair_step(packed_collate(rows, pad_id=0))["rewards"]
    return float((rewards[:, 0] > rewards[:, 1]).double().mean())


@pytest.mark.slow
def test_sft_then_dpo_learns_and_resumes(
    tmp_path: Path, pair_files: dict[str, Path], tiny_tokenizer
) -> None:
    from transformers import AutoModelForCausalLM

    from xlam.data.render import Renderer, RenderOptions
    from xlam.data.render.pairs import render_pair

    sft = tmp_path / "sft"
    train_small(sft, "trainer.max_steps=1", "~data.sources.chat", "~data.sources.multi_turn")
    ref_logps = tmp_path / "dpo" / "reference_logps.pt"
    args = [*DPO, pairs_source(pair_files["train"]), "objective.reference=precomputed"]
    # model.path=RUN_DIR: the SFT run's export is the policy and the reference
    _, got = train_small(tmp_path / "dpo", *args, f"model.path={sft}")
    assert got["module"].hparams.path == str(sft / "export")
    assert ref_logps.is_file() and (tmp_path / "dpo" / "export" / "config.json").is_file()
    steps = step_metrics(tmp_path / "dpo")
    assert sorted(steps) == list(range(4))
    for key in ("chosen", "rejected", "margins", "accuracy"):
        assert f"train/rewards/{key}" in steps[3]
    assert {"train/logps/chosen", "train/logps/rejected"} <= set(steps[3])
    assert steps[0]["train/loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference
    assert steps[3]["train/rewards/margins"] > steps[1]["train/rewards/margins"] > 0

    renderer = Renderer(tiny_tokenizer, RenderOptions(mode="per_turn"))
    held_out = []
    for p in read_pairs(pair_files["test"]):
        s = render_pair(renderer, p)
        held_out.append({"id": s.id, "source": "t", **vars(s)})
    base = AutoModelForCausalLM.from_pretrained(sft / "export").eval()
    assert heldout_accuracy(got["module"], base, held_out) > 0.9

    # Exact resume from step 2, in another run dir, with the same precomputed reference.
    resumed = tmp_path / "resumed"
    train_small(
        resumed,
        *args,
        f"model.path={sft}",
        f"objective.reference_cache={ref_logps}",
        f"ckpt_path={tmp_path / 'dpo' / 'checkpoints' / 'step000002.ckpt'}",
        "export.enabled=false",
    )
    again = step_metrics(resumed)
    assert sorted(again) == [2, 3]
    _assert_same_steps(steps, again, [2, 3], ("train/loss", "train/rewards/margins"), 1e-5)


def test_shared_history_trains_as_separate_halves(
    tmp_path: Path, pair_files: dict[str, Path]
) -> None:
    """``data.render.shared_history`` through ``xlam-train``: the same logged steps in fewer
    tokens; refused with an attention that would not read the branch."""
    args = [*DPO, pairs_source(pair_files["train"]), "trainer.max_steps=2", "export.enabled=false"]
    # one pair a row, so both runs see the same pairs in each step (shared, more would fit)
    args += ["data.packing.enabled=false", "data.max_length=2048", "data.batch_size=4"]
    args += ["~callbacks.model_checkpoint"]
    args += ["model.attn_implementation=xlam_segments"]
    steps = {}
    for shared in (False, True):
        run = tmp_path / f"shared_{shared}"
        train_small(run, *args, f"data.render.shared_history={str(shared).lower()}")
        steps[shared] = step_metrics(run)
    _assert_same_steps(steps[False], steps[True], [0, 1], LOGGED, 1e-5)
    assert steps[True][0]["train/pairs"] == steps[False][0]["train/pairs"] == 4
    with pytest.raises(ValueError, match=r"needs model\.attn_implementation=xlam_segments"):
        train_small(tmp_path / "sdpa", *args[:-1], "data.render.shared_history=true")


def _pair_rows(dm) -> dict[str, tuple[list[int], list[int], list[int], list[int]]]:
    """Every pair of an epoch, by id: its tokens, labels, sides and position ids as batched."""
    out = {}
    for batch in dm.train_dataloader():
        for k, pid in enumerate(batch["ids"]):
            m = batch["sample_index"] == k
            keys = ("input_ids", "labels", "pair_side", "position_ids")
            out[pid] = tuple(batch[key][m].tolist() for key in keys)
    return out


def test_pairs_stream_as_they_render_from_the_cache(
    tmp_path: Path, pair_files: dict[str, Path]
) -> None:
    from xlam.data.datamodule import TrajectoryDataModule

    got = {}
    for streaming in (False, True):
        src = {"p": {"path": str(pair_files["train"]), "format": "pairs", "streaming": streaming}}
        dm = TrajectoryDataModule(
            src,
            TINY_TOKENIZER_DIR,
            batch_size=2,
            packing={"enabled": True, "seq_length": 2048},
            render={"shared_history": True},
            cache_dir=str(tmp_path / "cache"),
        )
        dm.prepare()
        dm.setup()
        got[streaming] = _pair_rows(dm)
    n = len(pair_files["train"].read_text().splitlines())
    assert len(got[True]) == len(got[False]) == n  # every pair once
    assert got[True] == got[False]
    assert all(1 in rows[2] and max(rows[3]) > 100 for rows in got[True].values())

    # xlam-train on the stream; the precomputed reference (a pass over all) is refused.
    args = [*DPO, "trainer.max_steps=2", "export.enabled=false", "~callbacks.model_checkpoint"]
    args += [f"data.sources={{p: {{path: {pair_files['train']}, format: pairs, streaming: true}}}}"]
    train_small(tmp_path / "stream", *args, "objective.reference=frozen_copy")
    steps = step_metrics(tmp_path / "stream")
    assert sorted(steps) == [0, 1] and steps[1]["train/pairs"] > 0
    with pytest.raises(ValueError, match=r"stream \(streaming: true\): use objective"):
        train_small(tmp_path / "pre", *args, "objective.reference=precomputed")


# -- strategies: 2 ranks x 2 micro-batches x 1 row log what 1 CPU process x 4 rows logs --
STRATEGY = [
    *COMMON,
    "objective=dpo",
    "model.lora.enabled=true",
    "data.packing.seq_length=2048",
    "trainer.max_steps=2",
    "export.enabled=false",
    "~callbacks.model_checkpoint",
]
ONE_ROW = ["trainer.devices=2", "data.batch_size=1", "trainer.accumulate_grad_batches=2"]
LOGGED = ("train/loss", "train/rewards/margins", "train/rewards/accuracy", "train/logps/chosen")
LOGGED += ("train/grad_norm",)  # Adam hides a gradient scaled by the world size: the norm shows it
# One reference per strategy; with LoRA at its start (B = 0) all three equal the CPU run's
# (reference=auto: the adapters switched off).
RUNS = {
    "ddp": ["trainer=ddp"],  # the adapters switched off
    "deepspeed_zero2": ["trainer=deepspeed_zero2", "objective.reference=precomputed"],  # gathered
    # loaded into partitions (model.path), then built again for a reference in an engine of
    # its own
    "deepspeed_zero3": ["trainer=deepspeed_zero3", "objective.reference=frozen_copy"],
}


def _tiny_folder(out: Path) -> Path:
    """The runs' config-built initial model as a model folder (the same weights)."""
    from transformers import AutoTokenizer

    from xlam.models.components.build import build_causal_lm
    from xlam.models.export import export_hf
    from xlam.utils.hydra import compose_config

    m = compose_config(STRATEGY).model
    tok = AutoTokenizer.from_pretrained(m.tokenizer_path)
    model = build_causal_lm(None, len(tok), dict(m.from_config), seed=m.seed)
    return export_hf(model, tok, out)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free local ports (held together while the OS picks them)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.mark.slow
def test_dpo_under_strategies_logs_like_cpu(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    # The three 2-rank launches run at once, and the CPU run meanwhile in this process: most
    # of a launch is imports and process start, one core each, so together they take little
    # more than one alone. Each launch has its own folder (render cache, logs) and port.
    source = pairs_source(pair_files["train"])
    procs = {}
    for (name, extra), port in zip(RUNS.items(), free_ports(len(RUNS)), strict=True):
        cwd = tmp_path / name
        cwd.mkdir()
        args = [*STRATEGY, *ONE_ROW, source, *extra, f"hydra.run.dir={cwd / 'run'}"]
        if name == "deepspeed_zero3":
            args.append(f"model.path={_tiny_folder(tmp_path / 'tiny')}")
        with (cwd / "out.log").open("w") as out:
            env = {**ENV, "MASTER_PORT": str(port)}
            procs[name] = subprocess.Popen(
                [XLAM_TRAIN, *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: rank 1 goes with it
            )
    try:
        train_small(tmp_path / "cpu", *STRATEGY, source, "data.batch_size=4")
        cpu = step_metrics(tmp_path / "cpu")
        for name, proc in procs.items():
            rc = proc.wait(timeout=600)
            assert rc == 0, (name, (tmp_path / name / "out.log").read_text()[-5000:])
    finally:  # a failed launch can leave its rank 1 behind: its group goes
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert sorted(cpu) == [0, 1] and cpu[1]["train/rewards/margins"] > 0
    for name in RUNS:
        got = step_metrics(tmp_path / name / "run")
        assert sorted(got) == [0, 1], name
        # precomputed: the reference comes from other forwards (its own packed rows), so at
        # step 0 (policy = reference) each pair's margin is float noise, its accuracy a coin.
        noisy = (
            {"train/rewards/accuracy"} if "objective.reference=precomputed" in RUNS[name] else set()
        )
        for step, keys in ((0, set(LOGGED) - noisy), (1, set(LOGGED))):
            want, have = cpu[step], got[step]
            bad = {
                k: (want[k], have[k])
                for k in keys
                if not math.isclose(want[k], have[k], rel_tol=1e-4, abs_tol=1e-4)
            }
            assert not bad, (name, step, bad)
    log = (tmp_path / "deepspeed_zero3" / "out.log").read_text()
    assert "frozen reference: ZeRO-3 partitions" in log, log[-3000:]
    ref = torch.load(tmp_path / "deepspeed_zero2" / "run" / "reference_logps.pt")
    # every pair once, scored by one rank or the other and gathered
    assert sorted(ref["keys"]) == sorted(f"pairs/{p.id}" for p in read_pairs(pair_files["train"]))

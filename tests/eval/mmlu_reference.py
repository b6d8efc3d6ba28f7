"""lm-eval's own MMLU prompts for local documents: the reference of the `mmlu` prompt format.

`mmlu_task` writes a task whose YAML includes lm-eval 0.4.13's installed `mmlu_<subject>.yaml` (which includes
`_default_template_yaml`: doc_to_text, choices, the `first_n` few-shot sampler over the `dev` split, the task
description) and only points its data at local JSONL files; `contexts` builds lm-eval's requests and returns
the context text of every test document. Documents are MMLU's fields (`question`, `choices`, `answer`, `subject`)
plus an `id`, which `entropy_jax.data.mcqa.load` reads too (`choices` is an alias of `options`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.tasks import TaskManager  # noqa: E402


def write_docs(path: Path, questions, subject: str) -> Path:
    """Questions (`mcqa.Question`) as MMLU documents of `subject`, one JSON object per line."""
    path.write_text("".join(json.dumps({"id": q.id, "question": q.question, "choices": list(q.options),
                                        "answer": q.answer, "subject": subject}) + "\n" for q in questions))
    return path


def mmlu_task(root: Path, test: Path, dev: Path, subject: str = "astronomy"):
    """lm-eval's MMLU task of `subject` reading `test` (evaluated) and `dev` (few-shot) JSONL files."""
    installed = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default" / f"mmlu_{subject}.yaml"
    tasks = root / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "local_mmlu.yaml").write_text(
        f"include: {installed}\ntask: local_mmlu\ndataset_path: json\ndataset_name: null\ndataset_kwargs:\n"
        f"  data_files:\n    test: {test}\n    dev: {dev}\n  cache_dir: {root / 'hf'}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        manager = TaskManager(include_path=str(tasks), include_defaults=False)
        return manager.load(["local_mmlu"])["tasks"]["local_mmlu"]


def contexts(task, shots: int, system_instruction: str | None = None) -> list[str]:
    """The context of the requests lm-eval sends for each test document (`build_all_requests`, as its evaluator
    calls it without a chat template), in document order."""
    task.set_config(key="num_fewshot", value=shots)
    task.build_all_requests(system_instruction=system_instruction)
    first = sorted((inst.doc_id, inst.args[0]) for inst in task.instances if inst.idx == 0)
    assert {inst.args[1] for inst in task.instances} == {" A", " B", " C", " D"}  # the continuations it scores
    return [context for _, context in first]

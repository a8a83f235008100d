"""lm-evaluation-harness's `local-completions` model with the remote tokenizer, on the
JSONL task in ../lm_eval_task, with requests sent as token ids or as text.

Usage: lm_eval_session.py BASE_URL. Prints JSON with, for each mode, the scores and
each choice's log-likelihood.
"""

import json
import os
import sys
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

TASK_DIR = Path(__file__).resolve().parent.parent / "lm_eval_task"
TASKS = ["lmserve_capitals", "lmserve_capitals_rolling"]


def evaluate(base_url: str, tokenized: bool) -> dict:
    results = simple_evaluate(
        model="local-completions",
        model_args={
            "base_url": f"{base_url}/completions",
            "model": "local-model",
            "tokenizer_backend": "remote",
            "tokenized_requests": tokenized,
            "max_retries": 1,
            "num_concurrent": 4,
        },
        tasks=TASKS,
        task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
        bootstrap_iters=0,
        log_samples=True,
    )
    scores, samples = results["results"], results["samples"]
    return {
        "acc": scores["lmserve_capitals"]["acc,none"],
        "acc_norm": scores["lmserve_capitals"]["acc_norm,none"],
        "bits_per_byte": scores["lmserve_capitals_rolling"]["bits_per_byte,none"],
        "choice_loglikelihoods": [[float(r[0]) for r in s["filtered_resps"]]
                                  for s in samples["lmserve_capitals"]],
    }


def main() -> None:
    os.chdir(TASK_DIR)  # the task's data_files are relative
    print(json.dumps({mode: evaluate(sys.argv[1], tokenized=mode == "tokenized")
                      for mode in ("tokenized", "text")}))


if __name__ == "__main__":
    main()

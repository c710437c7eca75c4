"""The PyTorch side of `npm run bench:peers` (never a CI requirement).

One task per process, argument a JSON task like int21-child.mjs's; prints `RESULT {json}`:
  {"task": "step", "dir", "seq", "steps", "threads"}   LoRA r 8 on q,v (PEFT), AdamW, float32, optional checkpointing
  {"task": "gemm", "n", "threads"}                     torch.matmul of two float32 [n x n]
`dir` is the Hugging Face folder peers.ts wrote from int21's synthetic weights.
"""

import json
import resource
import sys
import time


def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000.0


def main():
    task = json.loads(sys.argv[1])
    import torch

    torch.set_num_threads(int(task.get("threads", 1)))
    torch.manual_seed(0)
    result = dict(task)
    result["torch"] = torch.__version__
    if task["task"] == "gemm":
        n = int(task["n"])
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        torch.matmul(a, b)
        times = []
        for _ in range(int(task.get("reps", 5))):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        result["ms"] = times[len(times) // 2]
        result["gflops"] = 2 * n**3 / (result["ms"] * 1e6)
    elif task["task"] == "step":
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(task["dir"], dtype=torch.float32, attn_implementation="sdpa")
        if task.get("checkpoint", False):
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        model.config.use_cache = False
        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        )
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        T = int(task["seq"])
        V = model.config.vocab_size
        ids = torch.tensor([[1 + ((t + 1) * 2654435761 % 2**32) % (V - 1) for t in range(T + 1)]])
        inp, tgt = ids[:, :T], ids[:, 1:]
        wall, cpu = [], []
        loss_value = float("nan")
        for s in range(int(task["steps"]) + 1):
            t0, c0 = time.perf_counter(), cpu_ms()
            opt.zero_grad(set_to_none=True)
            logits = model(input_ids=inp).logits
            loss = torch.nn.functional.cross_entropy(logits.view(-1, V), tgt.reshape(-1))
            loss.backward()
            opt.step()
            loss_value = float(loss)
            if s > 0:  # the first step warms up, as on int21's side
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append(cpu_ms() - c0)
        wall.sort()
        cpu.sort()
        result["stepMs"] = wall[len(wall) // 2]
        result["stepCpuMs"] = cpu[len(cpu) // 2]
        result["loss"] = loss_value
    else:
        raise SystemExit(f"torch_child: unknown task {task['task']}")
    result["peakRssBytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

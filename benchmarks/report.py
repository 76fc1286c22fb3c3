"""Render a benchmark results dict as a Markdown page."""

from __future__ import annotations


def _range(stats: dict, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(stats['median'])} ({fmt.format(stats['min'])}–{fmt.format(stats['max'])})"


def _diff(row: dict) -> str:
    """Newer results give the difference relative to the largest logit, older ones absolute."""
    if "max_relative_diff_vs_eager" in row:
        return f"{row['max_relative_diff_vs_eager']:.1e} rel"
    return f"{row['max_abs_diff_vs_eager']:.1e} abs"


def markdown_report(results: dict) -> str:
    machine = results["machine"]
    roof = results["matmul_roof_gflops"]
    peak = results["peak_gflops"]
    lines = [
        f"# Benchmarks: {machine['cpu']} ({machine['cores']} cores), {results['date']}",
        "",
        f"- fp32 peak: {machine['derivation']}"
        + (
            f" (overridden: {peak:.1f} GFLOP/s)"
            if abs(peak - machine["peak_gflops"]) > 1e-6
            else ""
        ),
        f"- practical roof: 4096x4096 fp32 matmul {roof['median']:.1f} GFLOP/s "
        f"({roof['median'] / peak:.0%} of peak)",
        f"- torch {machine['torch_version']}, {machine['torch_threads']} threads",
        "- figures: median (min–max) over repetitions after warm-up",
        "",
    ]
    if results.get("training"):
        lines += [
            "## Training throughput (one SGD step, forward + backward)",
            "",
            "| model | implementation | input | batch | layout | precision | images/s | GFLOP/s "
            "| MFU (fp32 peak) | of matmul roof | vs first row |",
            "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in results["training"]:
            lines.append(
                f"| {r['model']} | {r.get('implementation', 'resnetkit')} | {r['input']} | "
                f"{r['batch']} | {r['layout']} | {r['precision']}"
                f"{' (auto)' if r.get('auto_precision') else ''} | {_range(r['images_per_s'])} | "
                f"{r['achieved_gflops']:.1f} | {r['mfu_vs_fp32_peak']:.1%} | "
                f"{r.get('fraction_of_matmul_roof', 0):.0%} | "
                f"{r.get('speedup_vs_first', 1.0):.2f}x |"
            )
        lines.append("")
    pipe = results.get("pipeline")
    if pipe:
        lines += [
            "## Input pipeline (one Fashion-MNIST epoch, resnet20, batch 128, bf16 step)",
            "",
            "| pipeline | images/s | seconds |",
            "| --- | ---: | ---: |",
            f"| resnetkit batched in-memory (on-device augmentation) | "
            f"{pipe['batched_images_per_s']:.0f} | {pipe['batched_s']:.1f} |",
            f"| per-image transforms + DataLoader (2 workers) | "
            f"{pipe['tutorial_images_per_s']:.0f} | {pipe['tutorial_s']:.1f} |",
            "",
            f"Ratio: **{pipe['ratio']:.2f}x**. "
            + (
                f"Without a model, the batched pipeline delivers "
                f"{pipe['batched_only_images_per_s']:,.0f} img/s and the per-image DataLoader "
                f"{pipe['tutorial_only_images_per_s']:,.0f} img/s. "
                if "batched_only_images_per_s" in pipe
                else ""
            )
            + f"The augmentation + normalisation kernel takes "
            f"{pipe['augment_kernel_ms']:.2f} ms per batch, {pipe['augment_share_of_step']:.1%} "
            f"of a {pipe['train_step_ms']:.0f} ms training step.",
            "",
        ]
    inf = results.get("inference")
    if inf:
        lines += [
            "## Inference (eval mode, fp32)",
            "",
            "| model | batch | variant | latency ms | images/s | vs eager | max diff |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in inf["rows"]:
            lines.append(
                f"| {r['model']} {r['input']}x{r['input']} | {r['batch']} | {r['variant']} | "
                f"{_range(r['latency_ms'], '{:.2f}')} | {r['images_per_s']['median']:.1f} | "
                f"{r['speedup_vs_eager']:.2f}x | {_diff(r)} |"
            )
        lines.append("")
    tta = results.get("time_to_accuracy")
    if tta:
        reached = (
            f"{tta['seconds']:.0f} s (epoch {tta['epoch']})"
            if tta["seconds"] is not None
            else "not reached"
        )
        lines += [
            "## Time to accuracy",
            "",
            f"Fashion-MNIST {tta['goal']:.0%} with `configs/fashion_mnist_fast.yaml`: {reached}; "
            f"final {tta['final_acc']:.2%}, best {tta['best_acc']:.2%}, "
            f"whole run {tta['total_seconds']:.0f} s (run folder `{tta['run']}`).",
            "",
        ]
    if results.get("targets"):
        lines += [
            "## Targets",
            "",
            "| target | goal | measured | met |",
            "| --- | ---: | ---: | --- |",
        ]
        for t in results["targets"]:
            lines.append(
                f"| {t['target']} | {t['goal']:g} | {t['measured']:.3g} | "
                f"{'yes' if t['met'] else 'no (by ' + format(abs(t['margin']), '.3g') + ')'} |"
            )
        lines.append("")
    return "\n".join(lines)

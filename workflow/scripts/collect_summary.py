from qpuflow.smk import collect_summary

collect_summary(snakemake)  # noqa: F821 - injected by Snakemake

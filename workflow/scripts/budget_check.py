from qpuflow.smk import budget_check

budget_check(snakemake)  # noqa: F821 - injected by Snakemake

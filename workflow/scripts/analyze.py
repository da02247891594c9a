from qpuflow.smk import analyze

analyze(snakemake)  # noqa: F821 - injected by Snakemake

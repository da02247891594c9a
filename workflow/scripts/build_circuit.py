from qpuflow.smk import build_circuit

build_circuit(snakemake)  # noqa: F821 - injected by Snakemake

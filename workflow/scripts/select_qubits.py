from qpuflow.smk import select_qubits

select_qubits(snakemake)  # noqa: F821 - injected by Snakemake

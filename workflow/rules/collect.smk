rule collect:
    """Poll every submitted job, download each finished result once, print status and summary.

    One process and no file inputs: collection can never make Snakemake build or submit
    anything, a network failure on one download is reported without failing the others, and
    the run exits 0 while jobs are still queued. Result files are written by the library
    (atomically, never overwritten), not declared as outputs.
    """
    log:
        "logs/collect/collect.log",
    localrule: True
    run:
        step("collect", input, output, params, wildcards, log)


rule simulate_local_job:
    """Rehearsals only (provider: local): simulate one submitted job now, on any host.

    With provider.local.queue_seconds > 0, submitting does not simulate; `snakemake simulate`
    (e.g. with --profile workflow/profiles/slurm) then spreads the sampling over cluster
    nodes. The local job store's per-job lock lets one process simulate each job, however
    many ask. collect then only downloads.
    """
    input:
        marker=ancient(f"{R}/submitted/{{exp}}/{{run}}.json"),
    output:
        flag=f"{R}/local_jobs/simulated/{{exp}}/{{run}}.done",
    log:
        "logs/simulate/{exp}/{run}.log",
    run:
        step("simulate_local", input, output, params, wildcards, log)


rule simulate:
    """Simulate every submitted local job that has a marker (see simulate_local_job)."""
    input:
        get_simulation_flags,

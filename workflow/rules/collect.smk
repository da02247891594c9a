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


rule collect_run:
    """One run's result, on request: `snakemake --cores 1 results/collected/<exp>/<run>.json`.

    Polls the run's job (submitting it first if the run has no marker yet, through
    submit_run) and downloads its result once the job is final. A job still queued or running
    fails this target with its state: ask again later, or use the collect target, which exits
    0 while jobs wait. The marker is ancient(): a result, once written, is never remade.
    """
    input:
        marker=ancient(f"{R}/submitted/{{exp}}/{{run}}.json"),
    output:
        result=f"{R}/collected/{{exp}}/{{run}}.json",
    resources:
        ibm_api=1,
    log:
        "logs/collect/{exp}/{run}.log",
    localrule: True
    run:
        step("collect_run", input, output, params, wildcards, log)


rule collected:
    """Every submitted run's result as its own target (collect_run each): `snakemake --summary
    collected` shows each run's marker and result and whether it is there. Waiting jobs fail
    their target (add --keep-going to collect the others); the finished target collects, run by
    run, only what has ended, and the collect target is the everyday way, one process that
    exits 0 while jobs wait."""
    input:
        get_submitted_results,


checkpoint poll_jobs:
    """Ask the provider once which submitted runs' jobs have ended (downloads nothing). The
    output is named for this invocation, so every run of the finished target polls anew, and
    Snakemake learns from it which results can exist now."""
    output:
        finished=POLL,
    resources:
        ibm_api=1,
    log:
        "logs/collect/poll.log",
    localrule: True
    run:
        step("poll_jobs", input, output, params, wildcards, log)


rule finished:
    """Every result that can exist now, each its own collect_run job: `snakemake --cores 1
    finished` polls once (checkpoint poll_jobs), then downloads exactly the results of the runs
    whose jobs ended, and exits 0 while the others wait (they are not targets yet)."""
    input:
        get_finished_results,


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

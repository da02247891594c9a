rule budget_precheck:
    """Before transpiling anything: estimate every pending job from one representative circuit
    per kind of run and refuse at once if the accounts cannot pay for them all (or if a
    scheduled campaign would not fit). budget_check repeats the check on the real circuits."""
    output:
        flag=temp(f"{R}/ledger/budget_prechecked.flag"),
    params:
        specs=get_pending_specs,
    log:
        "logs/submit/budget_precheck.log",
    localrule: True
    run:
        step("budget_precheck", input, output, params, wildcards, log)


rule pending_transpiled:
    """Every pending job's runs transpiled and checked: one file, so that budget_check has one input."""
    input:
        get_transpiled_manifests,
    output:
        temp(f"{R}/ledger/pending_transpiled.txt"),
    log:
        "logs/submit/pending_transpiled.log",
    localrule: True
    run:
        Path(output[0]).write_text("".join(f"{path}\n" for path in input))


rule budget_check:
    """Refuse the whole batch before the first job is sent if the accounts cannot pay for it.

    temp(): the flag is gone after each run, so new pending runs are always checked again.
    """
    input:
        f"{R}/ledger/pending_transpiled.txt",
    output:
        flag=temp(f"{R}/ledger/budget_checked.flag"),
    params:
        specs=get_pending_specs,
    log:
        "logs/submit/budget_check.log",
    localrule: True
    run:
        step("budget_check", input, output, params, wildcards, log)


rule submit_batch:
    """Submit a batch of runs (up to batches.RUNS_PER_SNAKEMAKE_JOB) as provider jobs carrying
    provider.pubs_per_job runs each as PUBs, each job exactly once; write each run's marker.
    The batch file records which job and PUB each run got.

    Only batches of pending runs are ever planned (wf.Study: a run with a marker, or accepted
    in the ledger, is not pending), so code, params or upstream changes never bring a
    submitted run back; the ledger catches everything else (-F, --rerun-incomplete, a deleted
    .snakemake/) and restores markers without submitting. One Snakemake job per batch, and one
    input shared by all of them, keeps Snakemake's per-job bookkeeping off the per-run path
    (bench/RESULTS.md, submit_overhead). A deployment session's runs are always one batch, so its
    arms go out one after the other in their recorded random order.
    """
    input:
        budget=f"{R}/ledger/budget_checked.flag",
    output:
        batch=f"{R}/submitted/{{exp}}/batches/{{batch}}.json",
    params:
        specs=get_batch_specs,
        jobs=get_batch_jobs,
    resources:
        ibm_api=1,
    log:
        "logs/submit/{exp}/{batch}.log",
    # Talks to the provider with the user's account: never on a cluster node.
    localrule: True
    run:
        step("submit_batch", input, output, params, wildcards, log)


rule submit_run:
    """One run's marker, on request: `snakemake --cores 1 results/submitted/<exp>/<run>.json`.

    Sends the provider job the run goes out in (with its pack-mates, whose markers are written
    too), after transpiling, the preflight and the budget check of that job. No file inputs
    but a deployment arm's selection: a marker, once written, is never made again (and if
    Snakemake is told to remake it, the ledger gives it back without submitting). Refuses a
    run that is not due, saying why (a session's schedule, an arm's probe).
    """
    input:
        selection=ancient(get_run_selection),
    output:
        marker=f"{R}/submitted/{{exp}}/{{run}}.json",
    params:
        pack=get_run_pack,
    resources:
        ibm_api=1,
    log:
        "logs/submit/{exp}/{run}.log",
    localrule: True
    run:
        step("submit_run", input, output, params, wildcards, log)

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

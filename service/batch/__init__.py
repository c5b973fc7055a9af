"""Batch re-scoring of photo archives on Dask (issue 7).

    sources.py   what to score: a folder tree, a zip or tar archive, or the service's store
    worker.py    the worker side: one cached Analyzer per process, a batch of photos -> rows
    flatten.py   a result document -> one flat row (every score and metric a column)
    writer.py    rows -> a Parquet dataset written in atomic parts
    resume.py    what an existing dataset already holds (sha256 + pipeline_version)
    runner.py    the client side: enumerate, batch, bounded in-flight futures, write, summarise
    report.py    per-metric distributions, reference populations, ``percentile_of``

``pipelines`` knows nothing of this: it stays pure, one photo at a time; everything about
clusters, files and archives lives here.
"""

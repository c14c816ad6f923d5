"""The Training & Quality dashboard (issue 13): a Streamlit app over the published `qa_reporting`
tables, never `qa_core`.

- `snapshot.py`: the pipeline exports `qa_reporting` to Parquet files in a snapshot folder, swapped
  atomically after each monthly publication; the app reads the files, so it never opens the DuckDB
  warehouse and never holds a lock that could fail a run.
- `source.py`: where the app reads: the snapshot, or PostgreSQL through the analyst login
  (`QA_DASHBOARD_URL`).
- `figures.py`: the figures of a selection (filters, pooled accuracy with its Wilson interval,
  heat map, drill-down), pure pandas.
- `app.py`: the Streamlit page; `serve.py`: `qa-pipeline dashboard` / `make dashboard`.
"""

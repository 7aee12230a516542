{#
  Applied to a source's _manifests table. Fails on every file a manifest lists (any
  status) that cannot be read under the landing root: a lost or misplaced part. A file of
  zero rows (the empty part a `deletes` companion stream writes when nothing was deleted)
  has no row to be seen through, and is skipped.
  Manifest paths are relative to the landing root; landed rows carry their full path.
  Manifests and landed rows are read from the partitions of the last
  `landfall_partition_lookback_days` days (default 3): a run's parts and its manifest share
  the run's start date as extracted_date.
#}
{% test landfall_manifest_files_exist(model, source_name, streams, file_column=none) %}
{%- set file_column = file_column or landfall.landfall_file_column() %}
{%- set recent = landfall.landfall_recent_partitions() %}
with manifest_files as (
    {{ landfall.landfall_manifest_files(model, recent) }}
),

landed_files as (
    {%- for stream in streams %}
    select distinct '{{ stream }}' as stream_name, {{ file_column }} as landed_file
    from {{ source(source_name, stream) }}
    where {{ recent }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select m.run_id, m.run_status, m.stream_name, m.path
from manifest_files as m
where m.rows > 0
  and not exists (
    select 1
    from landed_files as l
    where l.stream_name = m.stream_name
      and right(l.landed_file, length(m.path) + 1) = '/' || m.path
)
{% endtest %}

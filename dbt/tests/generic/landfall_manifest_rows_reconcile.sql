{#
  Applied to a source's _manifests table. For every manifest with status `succeeded`,
  fails on each stream whose rows_written differs from the rows landed with that _run_id,
  and on each listed file whose `rows` differs from the rows read from it. Catches a part
  file copied into a run, a lost part, and a manifest that miscounts.
  Manifests and landed rows are read from the partitions of the last
  `landfall_partition_lookback_days` days (default 3): a run's parts and its manifest share
  the run's start date as extracted_date.
#}
{% test landfall_manifest_rows_reconcile(model, source_name, streams, file_column=none) %}
{%- set file_column = file_column or landfall.landfall_file_column() %}
{%- set recent = landfall.landfall_recent_partitions() %}
with manifest_streams as (
    {{ landfall.landfall_manifest_streams(model, recent) }}
),

manifest_files as (
    {{ landfall.landfall_manifest_files(model, recent) }}
),

landed_by_run as (
    {%- for stream in streams %}
    select '{{ stream }}' as stream_name, _run_id as run_id, count(*) as rows_landed
    from {{ source(source_name, stream) }}
    where {{ recent }}
    group by _run_id
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

landed_by_file as (
    {%- for stream in streams %}
    select '{{ stream }}' as stream_name, {{ file_column }} as landed_file, count(*) as rows_landed
    from {{ source(source_name, stream) }}
    where {{ recent }}
    group by {{ file_column }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

stream_mismatches as (
    select
        'stream rows' as check_name,
        m.run_id,
        m.stream_name,
        cast(null as varchar) as path,
        m.rows_written as rows_expected,
        coalesce(l.rows_landed, 0) as rows_landed
    from manifest_streams as m
    left join landed_by_run as l
        on l.run_id = m.run_id and l.stream_name = m.stream_name
    where m.run_status = 'succeeded'
      and m.rows_written <> coalesce(l.rows_landed, 0)
),

file_mismatches as (
    select
        'file rows' as check_name,
        m.run_id,
        m.stream_name,
        m.path,
        m.rows as rows_expected,
        coalesce(sum(l.rows_landed), 0) as rows_landed
    from manifest_files as m
    left join landed_by_file as l
        on l.stream_name = m.stream_name
        and right(l.landed_file, length(m.path) + 1) = '/' || m.path
    where m.run_status = 'succeeded'
    group by m.run_id, m.stream_name, m.path, m.rows
    having m.rows <> coalesce(sum(l.rows_landed), 0)
)

select * from stream_mismatches
union all
select * from file_mismatches
{% endtest %}

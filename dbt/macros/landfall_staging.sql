{#
  landfall_staging(source_name, stream_name): the body of a staging model for one stream.

  One row per primary key (`_source_record_id`): the latest version by the record's cursor
  (`_source_updated_at`, typed as the declared cursor column when there is one), then
  `_extracted_at`, then `_loaded_at`. Declared `columns` are parsed out of `_raw`; with a
  `delete_marker`, `is_deleted`/`deleted_at` say whether the latest version is a soft delete
  (both are false/null without one). `ingested_at` is when landfall landed that version.

  Incremental: each run reads the rows landed after the newest `_loaded_at` already staged,
  competes them against the staged versions of the same keys (so a late, older version
  never replaces a newer one), and merges the winners on `_source_record_id`.
  A stream without a primary key is deduplicated on `_payload_sha256` instead.

  Var `landfall_partition_lookback_days` (default unset) also skips extracted_date
  partitions older than that many days before the newest staged row: set it only when no
  run lasts longer than that.

  Hard deletes (dbt/README.md, "Deletes"):
  - snapshot_deletes=true (full-refresh streams): a key is deleted when a complete snapshot
    of the stream started after its kept version was extracted (the key was absent from it);
    deleted_at is the start of the first such snapshot. A complete snapshot is a manifest
    entry of this stream with status succeeded, sync_mode full_refresh and no dead letters,
    in a run whose manifest (the commit marker) says succeeded or partial. Parts without a
    manifest, failed streams and dead-lettering snapshots never delete anything.
  - deletes={'stream': S, 'time_format': F}: keys listed by companion table S (the
    stream's deletes endpoint) are deleted for good; deleted_at is S's cursor read in
    format F (rfc3339, date, unix_seconds, unix_millis, none), else when it was extracted.
  A delete_marker on the kept version wins over both (its deleted_at is kept).
#}
{% macro landfall_staging(source_name, stream_name, snapshot_deletes=false, deletes=none) %}
{{ config(
    materialized='incremental',
    unique_key='_source_record_id',
    incremental_strategy=landfall.landfall_incremental_strategy(),
    on_schema_change='append_new_columns',
) }}

{%- set landed_relation = source(source_name, stream_name) -%}
{%- set manifests_relation = source(source_name, '_manifests') if snapshot_deletes else none -%}
{%- set deletes_relation = source(source_name, deletes['stream']) if deletes else none -%}
{%- set spec = landfall.landfall_stream_spec(source_name, stream_name) -%}
{%- set declared = spec.get('columns') or {} -%}
{%- set primary_key = spec.get('primary_key') or [] -%}
{%- set cursor_field = spec.get('cursor_field') -%}
{%- set cursor_type = declared.get(cursor_field) if cursor_field else none -%}
{%- set marker = spec.get('delete_marker') -%}
{#- csv, tsv and xml streams: `_raw` is the row as sent, declared columns come from `_record`. -#}
{%- set record_column = spec.get('record_column') or '_raw' -%}

{%- set envelope = [
    '_source_system', '_source_object', '_source_endpoint', '_source_updated_at',
    '_extracted_at', '_loaded_at', '_run_id', '_connector_version', '_tenant',
    '_environment', '_payload_sha256', '_page', '_raw', '_landed_file',
] -%}
{%- if record_column != '_raw' -%}
  {%- do envelope.append(record_column) -%}
{%- endif -%}
{%- set output_columns = ['_source_record_id'] -%}
{%- for field in declared -%}
  {%- do output_columns.append(landfall.landfall_column_name(field)) -%}
{%- endfor -%}
{%- do output_columns.extend(['is_deleted', 'deleted_at', 'ingested_at']) -%}
{%- do output_columns.extend(envelope) -%}

{%- if cursor_type and cursor_type not in ('string', 'json') -%}
  {%- set cursor_order = landfall.landfall_cast('_source_updated_at', cursor_type, safe=true) -%}
{%- else -%}
  {%- set cursor_order = '_source_updated_at' -%}
{%- endif -%}

{%- if marker -%}
  {%- set marker_text = landfall.landfall_json_text(record_column, marker['field']) -%}
  {%- if 'value' in marker -%}
    {%- set marker_value = marker['value'] if marker['value'] is string else tojson(marker['value']) -%}
    {%- set is_deleted = "coalesce(" ~ marker_text ~ " = '" ~ (marker_value | replace("'", "''")) ~ "', false)" -%}
  {%- else -%}
    {%- set is_deleted = "coalesce(" ~ marker_text ~ " <> 'false', false)" -%}
  {%- endif -%}
  {%- set deleted_at = "case when " ~ is_deleted ~ " then coalesce("
      ~ landfall.landfall_cast(marker_text, 'timestamp', safe=true) ~ ", "
      ~ landfall.landfall_cast('_source_updated_at', 'timestamp', safe=true) ~ ", _extracted_at) end" -%}
{%- else -%}
  {%- set is_deleted = 'false' -%}
  {%- set deleted_at = 'cast(null as ' ~ landfall.landfall_sql_type('timestamp') ~ ')' -%}
{%- endif -%}

{#- is_deleted / deleted_at of a winner: the marker, then the deletes endpoint, then absence -#}
{%- set null_timestamp = 'cast(null as ' ~ landfall.landfall_sql_type('timestamp') ~ ')' -%}
{%- set removed_at = 'removed.removed_at' if deletes else null_timestamp -%}
{%- set absent_since = 'absent.absent_since' if snapshot_deletes else null_timestamp -%}
{%- set final_is_deleted = '(' ~ is_deleted ~ ' or ' ~ removed_at ~ ' is not null or ' ~ absent_since ~ ' is not null)' -%}
{%- set final_deleted_at = 'case when ' ~ is_deleted ~ ' then ' ~ deleted_at ~ ' else coalesce(' ~ removed_at ~ ', ' ~ absent_since ~ ') end' -%}

with landed as (
    select * from {{ landed_relation }}
    {%- if is_incremental() %}
    {%- set staged_until = "coalesce((select max(_loaded_at) from " ~ this ~ "), "
        ~ landfall.landfall_cast("'1970-01-01T00:00:00Z'", 'timestamp') ~ ")" %}
    where _loaded_at > {{ staged_until }}
    {%- if var('landfall_partition_lookback_days', none) is not none %}
      and extracted_date >= cast({{ dbt.dateadd('day', -1 * var('landfall_partition_lookback_days') | int, staged_until) }} as date)
    {%- endif %}
    {%- endif %}
),

parsed as (
    select
        {% if primary_key -%}
        _source_record_id,
        {%- else -%}
        coalesce(_source_record_id, _payload_sha256) as _source_record_id,
        {%- endif %}
        {%- for field, type in declared.items() %}
        {{ landfall.landfall_field(record_column, field, type) }} as {{ adapter.quote(landfall.landfall_column_name(field)) }},
        {%- endfor %}
        {{ is_deleted }} as is_deleted,
        {{ deleted_at }} as deleted_at,
        _loaded_at as ingested_at,
        {%- for column in envelope if column != '_landed_file' %}
        {{ column }},
        {%- endfor %}
        {{ landfall.landfall_file_column() }} as _landed_file
    from landed
),

{%- if snapshot_deletes %}

snapshots as (
    select distinct started_at
    from ({{ landfall.landfall_manifest_streams(manifests_relation) }}) as manifest_streams
    where stream_name = '{{ stream_name | replace("'", "''") }}'
      and run_status in ('succeeded', 'partial')
      and stream_status = 'succeeded'
      and sync_mode = 'full_refresh'
      and coalesce(dead_letter_rows, 0) = 0
),

latest_snapshot as (
    select max(started_at) as started_at from snapshots
),
{%- endif %}
{%- if deletes %}

removed as (
    select
        _source_record_id,
        max(coalesce({{ landfall.landfall_cursor_timestamp('_source_updated_at', deletes.get('time_format')) }}, _extracted_at)) as removed_at
    from {{ deletes_relation }}
    where _source_record_id is not null
    group by _source_record_id
),
{%- endif %}

candidates as (
    select * from parsed
    {%- if is_incremental() %}
    {%- set staged = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list %}
    union all
    select
        {%- for column in output_columns %}
        {{ adapter.quote(column) if column | lower in staged else 'null' }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ this }}
    where _source_record_id in (select _source_record_id from parsed)
    {%- if snapshot_deletes %}
       or (not coalesce(is_deleted, false) and _extracted_at < (select started_at from latest_snapshot))
    {%- endif %}
    {%- if deletes %}
       or (not coalesce(is_deleted, false) and _source_record_id in (select _source_record_id from removed))
    {%- endif %}
    {%- endif %}
),

ranked as (
    select
        *,
        row_number() over (
            partition by _source_record_id
            order by
                {{ cursor_order }} desc nulls last,
                _extracted_at desc nulls last,
                _loaded_at desc nulls last,
                _landed_file desc nulls last
        ) as _landfall_version_rank
    from candidates
)

{%- if not (snapshot_deletes or deletes) %}

select
    {%- for column in output_columns %}
    {{ adapter.quote(column) }}{{ ',' if not loop.last }}
    {%- endfor %}
from ranked
where _landfall_version_rank = 1
{%- else %},

winners as (
    select * from ranked where _landfall_version_rank = 1
)
{%- if snapshot_deletes %},

absent as (
    select winners._source_record_id, min(snapshots.started_at) as absent_since
    from winners
    join snapshots on snapshots.started_at > winners._extracted_at
    where winners._extracted_at < (select started_at from latest_snapshot)
    group by winners._source_record_id
)
{%- endif %}

select
    {%- for column in output_columns %}
    {%- if column == 'is_deleted' %}
    {{ final_is_deleted }} as is_deleted
    {%- elif column == 'deleted_at' %}
    {{ final_deleted_at }} as deleted_at
    {%- else %}
    winners.{{ adapter.quote(column) }}
    {%- endif %}{{ ',' if not loop.last }}
    {%- endfor %}
from winners
{%- if snapshot_deletes %}
left join absent on absent._source_record_id = winners._source_record_id
{%- endif %}
{%- if deletes %}
left join removed on removed._source_record_id = winners._source_record_id
{%- endif %}
{%- endif %}
{% endmacro %}

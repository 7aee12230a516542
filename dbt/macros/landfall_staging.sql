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
#}
{% macro landfall_staging(source_name, stream_name) %}
{{ config(
    materialized='incremental',
    unique_key='_source_record_id',
    incremental_strategy=landfall.landfall_incremental_strategy(),
    on_schema_change='append_new_columns',
) }}

{%- set landed_relation = source(source_name, stream_name) -%}
{%- set spec = landfall.landfall_stream_spec(source_name, stream_name) -%}
{%- set declared = spec.get('columns') or {} -%}
{%- set primary_key = spec.get('primary_key') or [] -%}
{%- set cursor_field = spec.get('cursor_field') -%}
{%- set cursor_type = declared.get(cursor_field) if cursor_field else none -%}
{%- set marker = spec.get('delete_marker') -%}

{%- set envelope = [
    '_source_system', '_source_object', '_source_endpoint', '_source_updated_at',
    '_extracted_at', '_loaded_at', '_run_id', '_connector_version', '_tenant',
    '_environment', '_payload_sha256', '_page', '_raw', '_landed_file',
] -%}
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
  {%- set marker_text = landfall.landfall_json_text('_raw', marker['field']) -%}
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
        {{ landfall.landfall_field('_raw', field, type) }} as {{ adapter.quote(landfall.landfall_column_name(field)) }},
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

select
    {%- for column in output_columns %}
    {{ adapter.quote(column) }}{{ ',' if not loop.last }}
    {%- endfor %}
from ranked
where _landfall_version_rank = 1
{% endmacro %}

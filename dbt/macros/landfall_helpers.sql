{#
  Helpers shared by the staging macro and the tests. Adapter-specific SQL goes through
  adapter.dispatch so that a project on another warehouse can override one piece
  (e.g. `snowflake__landfall_json_text`) without copying the rest.
#}

{# The `meta.landfall` block of a source table, as `landfall dbt-sources` wrote it. #}
{% macro landfall_stream_spec(source_name, stream_name) %}
  {%- if not execute -%}
    {{ return({}) }}
  {%- endif -%}
  {%- for node in graph.sources.values() -%}
    {%- if node.source_name == source_name and node.name == stream_name -%}
      {{ return(node.meta.get('landfall') or {}) }}
    {%- endif -%}
  {%- endfor -%}
  {{ exceptions.raise_compiler_error("landfall: no source table " ~ source_name ~ "." ~ stream_name ~ " (run `landfall dbt-sources` and put its output under models/)") }}
{% endmacro %}


{# Output column name for a declared field: a JSON pointer /a/b becomes a__b. #}
{% macro landfall_column_name(field) %}
  {{- return(field.lstrip('/').replace('/', '__') if field.startswith('/') else field) -}}
{% endmacro %}


{# A field (top-level name or JSON pointer) as a JSON pointer. #}
{% macro landfall_json_pointer(field) %}
  {%- if field.startswith('/') -%}
    {{- return(field) -}}
  {%- endif -%}
  {{- return('/' ~ field.replace('~', '~0').replace('/', '~1')) -}}
{% endmacro %}


{# Text value of a field of the JSON text in `raw_column`: null when absent or JSON null. #}
{% macro landfall_json_text(raw_column, field) %}
  {{- return(adapter.dispatch('landfall_json_text', 'landfall')(raw_column, field)) -}}
{% endmacro %}

{% macro default__landfall_json_text(raw_column, field) -%}
  json_extract_string({{ raw_column }}, '{{ landfall.landfall_json_pointer(field) | replace("'", "''") }}')
{%- endmacro %}


{# JSON value (objects and arrays kept as JSON) of a field. #}
{% macro landfall_json_value(raw_column, field) %}
  {{- return(adapter.dispatch('landfall_json_value', 'landfall')(raw_column, field)) -}}
{% endmacro %}

{% macro default__landfall_json_value(raw_column, field) -%}
  json_extract({{ raw_column }}, '{{ landfall.landfall_json_pointer(field) | replace("'", "''") }}')
{%- endmacro %}


{#
  Column types a stream may declare in meta.landfall.columns: string, integer, number,
  boolean, timestamp (UTC instant), date, json. Any other value is used verbatim as a
  SQL type of the warehouse.
#}
{% macro landfall_sql_type(type) %}
  {{- return(adapter.dispatch('landfall_sql_type', 'landfall')(type)) -}}
{% endmacro %}

{% macro default__landfall_sql_type(type) %}
  {%- set types = {
      'string': 'varchar',
      'integer': 'bigint',
      'number': 'double',
      'boolean': 'boolean',
      'timestamp': 'timestamptz',
      'date': 'date',
      'json': 'json',
  } -%}
  {{- return(types.get(type, type)) -}}
{% endmacro %}


{# Cast; try_cast instead when var landfall_strict_casts is false or `safe` is true. #}
{% macro landfall_cast(expression, type, safe=false) %}
  {{- return(adapter.dispatch('landfall_cast', 'landfall')(expression, type, safe)) -}}
{% endmacro %}

{% macro default__landfall_cast(expression, type, safe) -%}
  {%- set function = 'try_cast' if (safe or not var('landfall_strict_casts', true)) else 'cast' -%}
  {{ function }}({{ expression }} as {{ landfall.landfall_sql_type(type) }})
{%- endmacro %}


{# Typed value of a declared field of `_raw`. #}
{% macro landfall_field(raw_column, field, type) %}
  {%- if type == 'json' -%}
    {{- return(landfall.landfall_json_value(raw_column, field)) -}}
  {%- endif -%}
  {{- return(landfall.landfall_cast(landfall.landfall_json_text(raw_column, field), type)) -}}
{% endmacro %}


{# True when `expression` (text) matches the regular expression `pattern`. #}
{% macro landfall_regex_match(expression, pattern) %}
  {{- return(adapter.dispatch('landfall_regex_match', 'landfall')(expression, pattern)) -}}
{% endmacro %}

{% macro default__landfall_regex_match(expression, pattern) -%}
  regexp_matches({{ expression }}, '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro snowflake__landfall_regex_match(expression, pattern) -%}
  regexp_like({{ expression }}, '{{ pattern | replace("\\", "\\\\") | replace("'", "''") }}')
{%- endmacro %}

{% macro bigquery__landfall_regex_match(expression, pattern) -%}
  regexp_contains({{ expression }}, r'{{ pattern }}')
{%- endmacro %}

{% macro postgres__landfall_regex_match(expression, pattern) -%}
  ({{ expression }} ~ '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro redshift__landfall_regex_match(expression, pattern) -%}
  ({{ expression }} ~ '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro databricks__landfall_regex_match(expression, pattern) -%}
  ({{ expression }} rlike '{{ pattern | replace("\\", "\\\\") | replace("'", "\\'") }}')
{%- endmacro %}

{% macro spark__landfall_regex_match(expression, pattern) -%}
  ({{ expression }} rlike '{{ pattern | replace("\\", "\\\\") | replace("'", "\\'") }}')
{%- endmacro %}


{#
  Manifest rows flattened to one row per (run, stream) (run_id, run_status, started_at,
  stream_name, stream_status, sync_mode, rows_written, dead_letter_rows, files) and per
  (run, stream, file), for the
  manifests matching `where` (a SQL predicate on the manifest table's columns). duckdb is the
  default implementation (tested); Snowflake, BigQuery, Databricks/Spark and Redshift
  Spectrum have their own (checked by `dbt parse` only: no warehouse reachable in the tests).
#}
{% macro landfall_manifest_streams(manifests, where='1 = 1') %}
  {{- return(adapter.dispatch('landfall_manifest_streams', 'landfall')(manifests, where)) -}}
{% endmacro %}

{% macro default__landfall_manifest_streams(manifests, where) -%}
  select
      run_id,
      status as run_status,
      started_at,
      stream.name as stream_name,
      stream.status as stream_status,
      stream.sync_mode as sync_mode,
      stream.rows_written as rows_written,
      stream.dead_letter_rows as dead_letter_rows,
      stream.files as files
  from (select run_id, status, started_at, unnest(streams) as stream from {{ manifests }} where {{ where }}) as manifest_streams
{%- endmacro %}

{% macro snowflake__landfall_manifest_streams(manifests, where) -%}
  select
      m.run_id,
      m.status as run_status,
      m.started_at,
      s.value:name::varchar as stream_name,
      s.value:status::varchar as stream_status,
      s.value:sync_mode::varchar as sync_mode,
      s.value:rows_written::number as rows_written,
      s.value:dead_letter_rows::number as dead_letter_rows,
      s.value:files as files
  from {{ manifests }} as m, lateral flatten(input => m.streams) as s
  where {{ where }}
{%- endmacro %}

{% macro bigquery__landfall_manifest_streams(manifests, where) -%}
  select
      m.run_id,
      m.status as run_status,
      m.started_at,
      s.name as stream_name,
      s.status as stream_status,
      s.sync_mode as sync_mode,
      s.rows_written as rows_written,
      s.dead_letter_rows as dead_letter_rows,
      s.files as files
  from {{ manifests }} as m cross join unnest(m.streams) as s
  where {{ where }}
{%- endmacro %}

{% macro spark__landfall_manifest_streams(manifests, where) -%}
  select
      run_id,
      status as run_status,
      started_at,
      stream.name as stream_name,
      stream.status as stream_status,
      stream.sync_mode as sync_mode,
      stream.rows_written as rows_written,
      stream.dead_letter_rows as dead_letter_rows,
      stream.files as files
  from (select run_id, status, started_at, explode(streams) as stream from {{ manifests }} where {{ where }}) as manifest_streams
{%- endmacro %}

{% macro redshift__landfall_manifest_streams(manifests, where) -%}
  select
      m.run_id,
      m.status as run_status,
      m.started_at,
      s.name as stream_name,
      s.status as stream_status,
      s.sync_mode as sync_mode,
      s.rows_written as rows_written,
      s.dead_letter_rows as dead_letter_rows
  from {{ manifests }} as m, m.streams as s
  where {{ where }}
{%- endmacro %}

{% macro landfall_manifest_files(manifests, where='1 = 1') %}
  {{- return(adapter.dispatch('landfall_manifest_files', 'landfall')(manifests, where)) -}}
{% endmacro %}

{% macro default__landfall_manifest_files(manifests, where) -%}
  select
      run_id,
      run_status,
      stream_name,
      file.path as path,
      file.rows as rows
  from (
      select run_id, run_status, stream_name, unnest(files) as file
      from ({{ landfall.landfall_manifest_streams(manifests, where) }}) as streams
  ) as manifest_files
{%- endmacro %}

{% macro snowflake__landfall_manifest_files(manifests, where) -%}
  select
      st.run_id,
      st.run_status,
      st.stream_name,
      f.value:path::varchar as path,
      f.value:rows::number as rows
  from ({{ landfall.landfall_manifest_streams(manifests, where) }}) as st,
      lateral flatten(input => st.files) as f
{%- endmacro %}

{% macro bigquery__landfall_manifest_files(manifests, where) -%}
  select
      st.run_id,
      st.run_status,
      st.stream_name,
      f.path as path,
      f.rows as rows
  from ({{ landfall.landfall_manifest_streams(manifests, where) }}) as st
  cross join unnest(st.files) as f
{%- endmacro %}

{% macro spark__landfall_manifest_files(manifests, where) -%}
  select
      run_id,
      run_status,
      stream_name,
      file.path as path,
      file.rows as rows
  from (
      select run_id, run_status, stream_name, explode(files) as file
      from ({{ landfall.landfall_manifest_streams(manifests, where) }}) as streams
  ) as manifest_files
{%- endmacro %}

{# Spectrum unnests nested data only in the FROM clause of the external table itself. #}
{% macro redshift__landfall_manifest_files(manifests, where) -%}
  select
      m.run_id,
      m.status as run_status,
      s.name as stream_name,
      f.path as path,
      f.rows as rows
  from {{ manifests }} as m, m.streams as s, s.files as f
  where {{ where }}
{%- endmacro %}


{#
  Strategy for incremental staging. merge needs dbt-duckdb >= 1.11 with duckdb >= 1.4
  (delete+insert works on older duckdb: override with duckdb__landfall_incremental_strategy).
#}
{% macro landfall_incremental_strategy() %}
  {{- return(adapter.dispatch('landfall_incremental_strategy', 'landfall')()) -}}
{% endmacro %}

{% macro default__landfall_incremental_strategy() %}
  {{- return('merge') -}}
{% endmacro %}


{#
  A cursor value (text, as the source gave it) in `time_format` as a timestamp, null when it
  does not parse: rfc3339, date, unix_seconds, unix_millis; none gives null.
#}
{% macro landfall_cursor_timestamp(expression, time_format) %}
  {{- return(adapter.dispatch('landfall_cursor_timestamp', 'landfall')(expression, time_format)) -}}
{% endmacro %}

{% macro default__landfall_cursor_timestamp(expression, time_format) -%}
  {%- if time_format == 'rfc3339' -%}
    {{ landfall.landfall_cast(expression, 'timestamp', safe=true) }}
  {%- elif time_format == 'date' -%}
    {{ landfall.landfall_cast(landfall.landfall_cast(expression, 'date', safe=true), 'timestamp', safe=true) }}
  {%- elif time_format in ('unix_seconds', 'unix_millis') -%}
    to_timestamp(try_cast({{ expression }} as double){{ ' / 1000' if time_format == 'unix_millis' }})
  {%- else -%}
    cast(null as {{ landfall.landfall_sql_type('timestamp') }})
  {%- endif -%}
{%- endmacro %}

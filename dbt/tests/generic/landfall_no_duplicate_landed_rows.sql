{#
  Fails when the same record version was landed more than once by one run: the same
  (_run_id, _page, _source_record_id, _payload_sha256) in more than one row. A part file
  copied or written twice shows up here; a re-extraction after a crash does not (it has a
  new _run_id), and staging removes those duplicates by primary key and cursor.
  Reads the partitions of the last `landfall_partition_lookback_days` days (default 3).
#}
{% test landfall_no_duplicate_landed_rows(model, file_column=none) %}
{%- set file_column = file_column or landfall.landfall_file_column() %}
select
    _run_id,
    _page,
    _source_record_id,
    _payload_sha256,
    count(*) as copies,
    min({{ file_column }}) as first_file,
    max({{ file_column }}) as last_file
from {{ model }}
where {{ landfall.landfall_recent_partitions() }}
group by _run_id, _page, _source_record_id, _payload_sha256
having count(*) > 1
{% endtest %}

{#
  Fails on every non-null value of the column that does not match `pattern`
  (e.g. a _payload_sha256 that is not 64 lowercase hex digits).
#}
{% test landfall_matches_regex(model, column_name, pattern) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
  and not {{ landfall.landfall_regex_match(column_name, pattern) }}
{% endtest %}

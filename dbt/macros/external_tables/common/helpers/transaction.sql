{% macro exit_transaction() %}
    {{ return(adapter.dispatch('exit_transaction', 'landfall')()) }}
{% endmacro %}

{% macro default__exit_transaction() %}
    {{ return('') }}
{% endmacro %}

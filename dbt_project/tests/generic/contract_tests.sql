{#
  Data tests whose expectations are read from the source contract (platform_assets/sources/sources.yml),
  not restated here. `source` names the contract's source, `column` its column when the model renamed it.
  Usage (column level):
    data_tests:
      - contract_accepted_values:
          arguments: {source: flights}
#}

{# Fails for each value outside the contract's `accepted` list. #}
{% test contract_accepted_values(model, column_name, source, column=none) %}
{%- set accepted = source_contract_column(source, column or column_name, 'accepted')['accepted'] %}

select {{ column_name }} as value, count(*) as n_records
from {{ model }}
where {{ column_name }} not in ({% for value in accepted %}'{{ value }}'{{ ', ' if not loop.last }}{% endfor %})
group by 1

{% endtest %}

{# Fails for each null in a column the contract declares `nullable: false`. #}
{% test contract_required(model, column_name, source, column=none) %}
{%- do source_contract_column(source, column or column_name, 'required') %}

select *
from {{ model }}
where {{ column_name }} is null

{% endtest %}

{# Fails for each repeated value of the column that is the contract's whole `key`. #}
{% test contract_key_unique(model, column_name, source, column=none) %}
{%- set key = source_contract(source)['key'] -%}
{%- if key != [column or column_name] -%}
    {{ exceptions.raise_compiler_error('sources.yml: the key of ' ~ source ~ ' is ' ~ key ~ ', not ' ~ (column or column_name)) }}
{%- endif %}

select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by 1
having count(*) > 1

{% endtest %}

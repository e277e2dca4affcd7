{#
  Fails for every row where the SQL boolean expression is not true.
  Usage (model level):
    data_tests:
      - expression_is_true:
          arguments:
            expression: "flight_date = data_date"
#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}

{#
  Daily delay counts of the run's flights at a grain (e.g. ['carrier'] or ['origin', 'dest']):
  scheduled, cancelled, arrived, summed arrival delay and arrivals more than 15 minutes late.
#}
{% macro daily_delay_counts(grain) %}

with

flights as (

    select *
    from {{ ref('stg_flights__flights') }}
    where {{ in_run_range('data_date') }}

)

select
    {{ grain | join(', ') }},
    flight_date,
    data_date,
    count(*) as flights_scheduled,
    count(*) filter (where is_cancelled) as flights_cancelled,
    count(arr_delay) as flights_arrived,
    coalesce(sum(arr_delay), 0) as sum_arr_delay,
    count(*) filter (where arr_delay > 15) as flights_delayed_15

from flights
group by {{ grain | join(', ') }}, flight_date, data_date

{% endmacro %}

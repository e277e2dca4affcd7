{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

with

flights as (

    select *
    from {{ ref('stg_flights__flights') }}
    where {{ in_run_range('data_date') }}

)

select
    origin,
    dest,
    flight_date,
    data_date,
    count(*) as flights_scheduled,
    count(*) filter (where is_cancelled) as flights_cancelled,
    count(arr_delay) as flights_arrived,
    coalesce(sum(arr_delay), 0) as sum_arr_delay,
    count(*) filter (where arr_delay > 15) as flights_delayed_15

from flights
group by origin, dest, flight_date, data_date

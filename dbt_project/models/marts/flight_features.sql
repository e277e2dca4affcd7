{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

{#- Trailing statistics use the days D-N .. D-1 before the flight date D, never D itself. -#}
{%- set window_days = var('trailing_window_days') | int -%}

with

flights as (

    select *
    from {{ ref('flights') }}
    where {{ in_run_range('data_date') }}

),

weather as (

    select origin, observed_at_utc, temp_f, wind_speed_mph, visibility_mi, precip_in,
        humidity_pct, pressure_mb
    from {{ ref('stg_weather__observations') }}
    -- a flight's scheduled UTC hour lies at most a day after its local flight date
    where observed_at_utc >= {{ dbt.dateadd('day', -1, range_start()) }}
        and observed_at_utc < {{ dbt.dateadd('day', 2, range_end()) }}

),

route_daily as (

    -- read the window before the run range too, so a one-day run still sees its trailing days
    select *
    from {{ ref('int_route_daily_delays') }}
    where flight_date between {{ dbt.dateadd('day', -window_days, range_start()) }}
        and {{ range_end() }}

),

carrier_daily as (

    select *
    from {{ ref('int_carrier_daily_delays') }}
    where flight_date between {{ dbt.dateadd('day', -window_days, range_start()) }}
        and {{ range_end() }}

),

route_trailing as (

    select
        origin,
        dest,
        flight_date,
        sum(flights_scheduled) over prior_days as trailing_flights,
        sum(flights_arrived) over prior_days as trailing_arrived,
        sum(sum_arr_delay) over prior_days as trailing_sum_arr_delay,
        sum(flights_delayed_15) over prior_days as trailing_delayed_15

    from route_daily
    window prior_days as (
        partition by origin, dest
        order by flight_date
        range between interval '{{ window_days }} days' preceding and interval '1 day' preceding
    )

),

carrier_trailing as (

    select
        carrier,
        flight_date,
        sum(flights_scheduled) over prior_days as trailing_flights,
        sum(flights_arrived) over prior_days as trailing_arrived,
        sum(sum_arr_delay) over prior_days as trailing_sum_arr_delay,
        sum(flights_delayed_15) over prior_days as trailing_delayed_15

    from carrier_daily
    window prior_days as (
        partition by carrier
        order by flight_date
        range between interval '{{ window_days }} days' preceding and interval '1 day' preceding
    )

)

select
    flights.flight_id,
    flights.flight_date,
    flights.data_date,
    flights.carrier,
    flights.origin,
    flights.dest,
    flights.sched_dep_hour,
    cast(extract(isodow from flights.flight_date) as integer) as day_of_week,
    cast(extract(month from flights.flight_date) as integer) as month,
    flights.distance,
    cast(extract(year from flights.flight_date) - flights.plane_year_built as integer) as plane_age_years,
    flights.plane_seats,
    flights.has_known_plane,

    weather.temp_f,
    weather.wind_speed_mph,
    weather.visibility_mi,
    weather.precip_in,
    weather.humidity_pct,
    weather.pressure_mb,

    cast(coalesce(route_trailing.trailing_flights, 0) as integer) as route_trailing_flights,
    route_trailing.trailing_sum_arr_delay
        / nullif(route_trailing.trailing_arrived, 0) as route_trailing_mean_arr_delay,
    cast(route_trailing.trailing_delayed_15 as double precision)
        / nullif(route_trailing.trailing_arrived, 0) as route_trailing_delayed_share,
    cast(coalesce(carrier_trailing.trailing_flights, 0) as integer) as carrier_trailing_flights,
    carrier_trailing.trailing_sum_arr_delay
        / nullif(carrier_trailing.trailing_arrived, 0) as carrier_trailing_mean_arr_delay,
    cast(carrier_trailing.trailing_delayed_15 as double precision)
        / nullif(carrier_trailing.trailing_arrived, 0) as carrier_trailing_delayed_share,

    flights.arr_delay,
    flights.is_cancelled,
    flights.arr_delay > 15 as is_arr_delayed_15

from flights
left join weather
    on flights.origin = weather.origin
    and flights.scheduled_departure_hour_utc = weather.observed_at_utc
left join route_trailing
    on flights.origin = route_trailing.origin
    and flights.dest = route_trailing.dest
    and flights.flight_date = route_trailing.flight_date
left join carrier_trailing
    on flights.carrier = carrier_trailing.carrier
    and flights.flight_date = carrier_trailing.flight_date

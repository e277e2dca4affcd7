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

),

airlines as (

    select carrier, airline_name
    from {{ ref('stg_reference__airlines') }}

),

airports as (

    select faa, airport_name
    from {{ ref('stg_reference__airports') }}

),

planes as (

    select tailnum, year_built, seats, aircraft_type
    from {{ ref('stg_reference__planes') }}

)

select
    flights.flight_id,
    flights.flight_date,
    flights.data_date,
    flights.carrier,
    airlines.airline_name,
    flights.flight_number,
    flights.tailnum,
    flights.origin,
    origin_airports.airport_name as origin_airport_name,
    flights.dest,
    dest_airports.airport_name as dest_airport_name,
    flights.sched_dep_time,
    flights.sched_arr_time,
    flights.sched_dep_hour,
    flights.scheduled_departure_hour_utc,
    flights.dep_time,
    flights.arr_time,
    flights.dep_delay,
    flights.arr_delay,
    flights.air_time,
    flights.distance,
    flights.is_cancelled,
    planes.year_built as plane_year_built,
    planes.seats as plane_seats,
    planes.aircraft_type as plane_aircraft_type,
    planes.tailnum is not null as has_known_plane,
    dest_airports.faa is not null as has_known_dest_airport,
    flights._source_file,
    flights._batch_id

from flights
left join airlines
    on flights.carrier = airlines.carrier
left join airports as origin_airports
    on flights.origin = origin_airports.faa
left join airports as dest_airports
    on flights.dest = dest_airports.faa
left join planes
    on flights.tailnum = planes.tailnum

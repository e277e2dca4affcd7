{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

with

source as (

    {{ select_current_batch(source('raw', 'flights'), in_run_range('_data_date')) }}

),

typed as (

    select
        {{ try_make_date(
            try_cast('year', 'integer'),
            try_cast('month', 'integer'),
            try_cast('day', 'integer'),
        ) }} as flight_date,
        _data_date as data_date,
        upper(trim(carrier)) as carrier,
        {{ try_cast('flight', 'integer') }} as flight_number,
        nullif(upper(trim(tailnum)), '') as tailnum,
        upper(trim(origin)) as origin,
        upper(trim(dest)) as dest,
        {{ try_cast('sched_dep_time', 'integer') }} as sched_dep_time,
        {{ try_cast('sched_arr_time', 'integer') }} as sched_arr_time,
        {{ try_cast('dep_time', 'integer') }} as dep_time,
        {{ try_cast('arr_time', 'integer') }} as arr_time,
        {{ try_cast('dep_delay', 'double precision') }} as dep_delay,
        {{ try_cast('arr_delay', 'double precision') }} as arr_delay,
        {{ try_cast('air_time', 'double precision') }} as air_time,
        {{ try_cast('distance', 'double precision') }} as distance,
        {{ try_cast('hour', 'integer') }} as sched_dep_hour,
        {{ try_cast('minute', 'integer') }} as sched_dep_minute,
        -- time_hour is an ISO instant ('2013-01-01T10:00:00Z'); stored as a plain TIMESTAMP in UTC
        {{ try_cast('time_hour', 'timestamptz') }} at time zone 'UTC' as scheduled_departure_hour_utc,
        _source_file,
        _batch_id,
        _row_number

    from source

)

select
    {{ format_date('flight_date', '%Y%m%d') }}
        || '_' || carrier
        || '_' || flight_number
        || '_' || origin as flight_id,
    flight_date,
    data_date,
    carrier,
    flight_number,
    tailnum,
    origin,
    dest,
    sched_dep_time,
    sched_arr_time,
    dep_time,
    arr_time,
    dep_delay,
    arr_delay,
    air_time,
    distance,
    sched_dep_hour,
    sched_dep_minute,
    scheduled_departure_hour_utc,
    dep_time is null as is_cancelled,
    _source_file,
    _batch_id,
    _row_number

from typed

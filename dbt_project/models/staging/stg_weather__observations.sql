{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

{%- set max_wind_speed = source_contract_column('weather', 'wind_speed', 'range')['range'][1] %}

with

source as (

    {{ select_current_batch(source('raw', 'weather'), in_run_range('_data_date')) }}

),

typed as (

    select
        upper(trim(origin)) as origin,
        {{ try_cast('time_hour', 'timestamptz') }} at time zone 'UTC' as observed_at_utc,
        {{ try_make_date(
            try_cast('year', 'integer'),
            try_cast('month', 'integer'),
            try_cast('day', 'integer'),
        ) }} as obs_date,
        {{ try_cast('hour', 'integer') }} as obs_hour,
        {{ try_cast('temp', 'double precision') }} as temp_f,
        {{ try_cast('dewp', 'double precision') }} as dewpoint_f,
        {{ try_cast('humid', 'double precision') }} as humidity_pct,
        {{ try_cast('wind_dir', 'double precision') }} as wind_dir_deg,
        {{ try_cast('wind_speed', 'double precision') }} as wind_speed_raw_mph,
        {{ try_cast('wind_gust', 'double precision') }} as wind_gust_mph,
        {{ try_cast('precip', 'double precision') }} as precip_in,
        {{ try_cast('pressure', 'double precision') }} as pressure_mb,
        {{ try_cast('visib', 'double precision') }} as visibility_mi,
        _data_date as data_date,
        _source_file,
        _batch_id,
        _row_number

    from source

),

deduplicated as (

    -- one observation per airport and UTC hour: keep the first delivered row
    select *
    from (
        select
            *,
            row_number() over (
                partition by origin, observed_at_utc
                order by data_date, _row_number
            ) as delivered_order
        from typed
    ) as ordered
    where delivered_order = 1

)

select
    origin,
    observed_at_utc,
    obs_date,
    obs_hour,
    temp_f,
    dewpoint_f,
    humidity_pct,
    wind_dir_deg,
    -- physically impossible readings above the contract's range (the feed has a 1,048 mph wind) are
    -- nulled, and flagged
    case when wind_speed_raw_mph > {{ max_wind_speed }} then null else wind_speed_raw_mph end as wind_speed_mph,
    coalesce(wind_speed_raw_mph > {{ max_wind_speed }}, false) as is_wind_speed_outlier,
    wind_gust_mph,
    precip_in,
    pressure_mb,
    visibility_mi,
    data_date,
    _source_file,
    _batch_id

from deduplicated

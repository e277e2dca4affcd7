{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='data_date',
    )
}}

with

staged as (

    select *
    from {{ ref('stg_bookings__bookings') }}
    where {{ in_run_range('data_date') }}
        and not is_retry_duplicate

),

flights as (

    select flight_id, flight_date, carrier, flight_number, origin
    from {{ ref('stg_flights__flights') }}

),

{% if is_incremental() %}
earlier_deliveries as (

    -- booking ids already validated for an earlier data_date outside this run's range
    select booking_id, min(data_date) as first_data_date
    from {{ this }}
    where not ({{ in_run_range('data_date') }})
        and data_date < {{ range_end() }}
        and booking_id in (select booking_id from staged)
    group by booking_id

),
{% endif %}

checked as (

    select
        staged.*,
        flights.flight_id,

        nullif(concat_ws(', ',
            case when staged.booking_id is null then 'booking_id' end,
            case when staged.passenger_name is null then 'passenger_name' end,
            case when staged.email is null then 'email' end,
            case when nullif(trim(staged.flight_date_raw), '') is null then 'flight_date' end,
            case when nullif(trim(staged.flight_number_raw), '') is null then 'flight_number' end
        ), '') as missing_fields,

        case
            when not staged.email like '%@%' then 'email has no @'
            when staged.email like '%@%@%' then 'email has more than one @'
            when not regexp_full_match(staged.email, '[^@\s]+@[^@\s]+\.[^@\s.]+')
                then 'email domain has no dot or the address contains spaces'
        end as email_problem,

        case
            when staged.phone_raw is not null and staged.phone_e164 is null then
                case
                    when regexp_matches(staged.phone_raw, '[A-Za-z]') then 'phone contains letters'
                    else 'phone has ' || length(regexp_replace(staged.phone_raw, '[^0-9]', '', 'g'))
                        || ' digits, expected 10 (or 11 starting with country code 1)'
                end
        end as phone_problem,

        -- versions of the same booking_id (retry copies are already excluded, so they differ)
        count(*) over (partition by staged.booking_id, staged.data_date) as versions_in_delivery,
        min(staged.data_date) over (partition by staged.booking_id) as first_data_date_in_run,
        {% if is_incremental() %}
        earlier_deliveries.first_data_date as first_data_date_before_run
        {% else %}
        cast(null as date) as first_data_date_before_run
        {% endif %}

    from staged
    left join flights
        on staged.flight_date = flights.flight_date
        and staged.carrier = flights.carrier
        and staged.flight_number = flights.flight_number
        and staged.origin = flights.origin
    {% if is_incremental() %}
    left join earlier_deliveries
        on staged.booking_id = earlier_deliveries.booking_id
        and earlier_deliveries.first_data_date < staged.data_date
    {% endif %}

),

ruled as (

    select
        *,
        case
            when missing_fields is not null then 'missing_required_field'
            when flight_date is null then 'unparseable_flight_date'
            when email_problem is not null then 'malformed_email'
            when phone_problem is not null then 'malformed_phone'
            when flight_id is null then 'unknown_flight'
            when versions_in_delivery > 1
                or first_data_date_in_run < data_date
                or first_data_date_before_run is not null
                then 'conflicting_duplicate_booking_id'
        end as rejection_rule,
        case
            when missing_fields is not null then 'required field missing: ' || missing_fields
            when flight_date is null
                then 'flight_date matches neither YYYY-MM-DD nor MM-DD-YYYY'
            when email_problem is not null then email_problem
            when phone_problem is not null then phone_problem
            when flight_id is null then
                'no flight ' || coalesce(carrier, '?') || ' ' || coalesce(flight_number_raw, '?')
                || ' from ' || coalesce(origin, '?') || ' on ' || strftime(flight_date, '%Y-%m-%d')
            when versions_in_delivery > 1 then
                'booking_id delivered ' || versions_in_delivery
                || ' times with different content in the same file'
            when first_data_date_in_run < data_date then
                'booking_id already delivered for data_date '
                || strftime(first_data_date_in_run, '%Y-%m-%d')
            when first_data_date_before_run is not null then
                'booking_id already delivered for data_date '
                || strftime(first_data_date_before_run, '%Y-%m-%d')
        end as rejection_reason

    from checked

)

select
    booking_id,
    flight_id,
    booked_on,
    flight_date,
    flight_date_raw,
    carrier,
    flight_number,
    flight_number_raw,
    origin,
    dest,
    passenger_name,
    email,
    email_raw,
    phone_e164,
    phone_raw,
    date_of_birth,
    loyalty_number,
    fare_class,
    fare_usd,
    rejection_rule is null as is_valid,
    rejection_rule,
    rejection_reason,
    data_date,
    _source_file,
    _batch_id,
    _row_number

from ruled

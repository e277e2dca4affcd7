{#
  The project's cross-database macros: one SQL for the embedded (DuckDB) and the team (PostgreSQL) target
  where dbt has no macro of its own. Each dispatches on the adapter (adapter.dispatch): `duckdb__` renders
  exactly the DuckDB SQL the models used before, `postgres__` its equivalent. docs/team.md lists what differs.

  The try_* macros yield NULL for a value that cannot be read, on both targets: staging casts every text
  column this way, and the quarantine judges the NULLs. dbt's own safe_cast is a plain cast on PostgreSQL,
  which fails the whole model on the first bad value. On PostgreSQL they call the functions that
  create_try_functions() (on-run-start, macros/try_functions.sql) defines in try_functions_schema().
#}

{% macro try_functions_schema() %}{{ return('platform_functions') }}{% endmacro %}

{#- The types try_cast reads text as, and the suffix of their PostgreSQL function. -#}
{% macro _try_cast_types() %}
    {{ return({'integer': 'integer', 'bigint': 'bigint', 'double precision': 'double', 'timestamptz': 'timestamptz'}) }}
{% endmacro %}

{# The text `expression` as `type` (one of _try_cast_types), or NULL when it is not a valid value of it. #}
{% macro try_cast(expression, type) %}
    {%- if type not in _try_cast_types() -%}
        {{ exceptions.raise_compiler_error("try_cast: type '" ~ type ~ "' is not supported (supported: "
            ~ _try_cast_types().keys() | join(', ') ~ "; dates: try_strptime_date with a format)") }}
    {%- endif -%}
    {{ return(adapter.dispatch('try_cast', 'flight_platform')(expression, type)) }}
{% endmacro %}

{% macro duckdb__try_cast(expression, type) -%}
    try_cast({{ expression }} as {{ type }})
{%- endmacro %}

{% macro postgres__try_cast(expression, type) -%}
    {{ try_functions_schema() }}.try_cast_{{ _try_cast_types()[type] }}(({{ expression }})::text)
{%- endmacro %}


{#
  The date in the text `expression` written as `format` (strptime directives %Y, %m, %d and literal
  characters), or NULL when it does not match or names no real day (2013-02-30).
#}
{% macro try_strptime_date(expression, format) %}
    {{ return(adapter.dispatch('try_strptime_date', 'flight_platform')(expression, format)) }}
{% endmacro %}

{% macro duckdb__try_strptime_date(expression, format) -%}
    try_strptime({{ expression }}, '{{ format }}')::date
{%- endmacro %}

{% macro postgres__try_strptime_date(expression, format) -%}
    {#- The format's shape as a regular expression without groups (PostgreSQL's capturing groups cost 12 us a
        value, a month of bookings 6 s), its separators turned into one, and the position of year, month, day. -#}
    {%- set digits = {'Y': '[0-9]{1,4}', 'm': '[0-9]{1,2}', 'd': '[0-9]{1,2}'} -%}
    {%- set shape, separators, positions = [], [], {} -%}
    {%- set state = namespace(directive=false, separated=true) -%}
    {%- for char in format -%}
        {%- if state.directive -%}
            {%- if char not in digits or char in positions or not state.separated -%}
                {{ exceptions.raise_compiler_error("try_strptime_date: format '" ~ format ~ "' is not supported on "
                    ~ target.type ~ ": %Y, %m and %d each once, separated by characters that are not letters or digits") }}
            {%- endif -%}
            {%- do shape.append(digits[char]) -%}
            {%- do positions.update({char: positions | length + 1}) -%}
            {%- set state.directive = false -%}
            {%- set state.separated = false -%}
        {%- elif char == '%' -%}
            {%- set state.directive = true -%}
        {%- elif char.isalnum() -%}
            {{ exceptions.raise_compiler_error("try_strptime_date: format '" ~ format ~ "': the literal '" ~ char
                ~ "' is not supported on " ~ target.type ~ " (separators only)") }}
        {%- else -%}
            {%- do shape.append('\\' ~ char) -%}
            {%- do separators.append(char) -%}
            {%- set state.separated = true -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if positions | length != 3 -%}
        {{ exceptions.raise_compiler_error("try_strptime_date: format '" ~ format ~ "' needs %Y, %m and %d") }}
    {%- endif -%}
    {%- set one_separator = separators[0] | replace("'", "''") -%}
    {%- set parts = expression if separators | unique | list | length == 1 else "translate(" ~ expression ~ ", '"
        ~ (separators | join('') | replace("'", "''")) ~ "', '" ~ (one_separator * separators | length) ~ "')" -%}
    case when ({{ expression }}) ~ '^{{ shape | join('') | replace("'", "''") }}$' then {{ try_functions_schema() }}.try_make_date(
        {%- for part in ['Y', 'm', 'd'] %}
        cast(split_part({{ parts }}, '{{ one_separator }}', {{ positions[part] }}) as integer){{ ',' if not loop.last }}
        {%- endfor %}
    ) end
{%- endmacro %}


{# make_date(year, month, day), or NULL when the parts name no real day. #}
{% macro try_make_date(year, month, day) %}
    {{ return(adapter.dispatch('try_make_date', 'flight_platform')(year, month, day)) }}
{% endmacro %}

{% macro duckdb__try_make_date(year, month, day) -%}
    try(make_date({{ year }}, {{ month }}, {{ day }}))
{%- endmacro %}

{% macro postgres__try_make_date(year, month, day) -%}
    {{ try_functions_schema() }}.try_make_date({{ year }}, {{ month }}, {{ day }})
{%- endmacro %}


{# A date or timestamp as text in a strftime `format` (%Y %m %d %H %M %S and literal characters). #}
{% macro format_date(expression, format) %}
    {{ return(adapter.dispatch('format_date', 'flight_platform')(expression, format)) }}
{% endmacro %}

{% macro duckdb__format_date(expression, format) -%}
    strftime({{ expression }}, '{{ format }}')
{%- endmacro %}

{% macro postgres__format_date(expression, format) -%}
    {%- set directives = {'Y': 'YYYY', 'm': 'MM', 'd': 'DD', 'H': 'HH24', 'M': 'MI', 'S': 'SS'} -%}
    {%- set pattern = [] -%}
    {%- set directive = namespace(pending=false) -%}
    {%- for char in format -%}
        {%- if directive.pending -%}
            {%- if char not in directives -%}
                {{ exceptions.raise_compiler_error("format_date: format '" ~ format ~ "': %" ~ char
                    ~ " is not supported (supported: %" ~ directives.keys() | join(' %') ~ ")") }}
            {%- endif -%}
            {%- do pattern.append(directives[char]) -%}
            {%- set directive.pending = false -%}
        {%- elif char == '%' -%}
            {%- set directive.pending = true -%}
        {%- else -%}
            {#- literal text in double quotes, so that to_char reads no pattern in it -#}
            {%- do pattern.append('"' ~ char ~ '"' if char.isalnum() else char) -%}
        {%- endif -%}
    {%- endfor -%}
    to_char({{ expression }}, '{{ pattern | join('') }}')
{%- endmacro %}


{# Whether the regular expression `pattern` (a plain string, not a SQL literal) matches the whole text. #}
{% macro regexp_full_match(expression, pattern) %}
    {{ return(adapter.dispatch('regexp_full_match', 'flight_platform')(expression, pattern | replace("'", "''"))) }}
{% endmacro %}

{% macro duckdb__regexp_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regexp_full_match(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}


{# Whether the regular expression `pattern` (a plain string) matches anywhere in the text. #}
{% macro regexp_contains(expression, pattern) %}
    {{ return(adapter.dispatch('regexp_contains', 'flight_platform')(expression, pattern | replace("'", "''"))) }}
{% endmacro %}

{% macro duckdb__regexp_contains(expression, pattern) -%}
    regexp_matches({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regexp_contains(expression, pattern) -%}
    ({{ expression }} ~ '{{ pattern }}')
{%- endmacro %}


{#
  a = b, where NULL equals NULL. DuckDB joins on `is not distinct from` by hashing; PostgreSQL cannot hash it and
  joins row by row (a 30-day stg_bookings__bookings ran for minutes), so there it is two equalities it can hash:
  the values as text with NULL as '', and whether each is NULL.
#}
{% macro equal_or_both_null(left, right) %}
    {{ return(adapter.dispatch('equal_or_both_null', 'flight_platform')(left, right)) }}
{% endmacro %}

{% macro duckdb__equal_or_both_null(left, right) -%}
    {{ left }} is not distinct from {{ right }}
{%- endmacro %}

{% macro postgres__equal_or_both_null(left, right) -%}
    (coalesce(cast({{ left }} as text), '') = coalesce(cast({{ right }} as text), '')
        and ({{ left }} is null) = ({{ right }} is null))
{%- endmacro %}


{#
  Post-hook of every model (dbt_project.yml): fresh statistics for the models read next in the same build.
  PostgreSQL plans from statistics that autovacuum gathers only later; without them it takes a just-written table
  for a few rows and joins it row by row. DuckDB keeps its statistics as it writes: nothing to do.
#}
{% macro analyze_model() %}
    {{ return(adapter.dispatch('analyze_model', 'flight_platform')()) }}
{% endmacro %}

{% macro default__analyze_model() %}{% endmacro %}

{% macro postgres__analyze_model() %}analyze {{ this }}{% endmacro %}


{#
  Pre-hook of every model (dbt_project.yml), inside the model's transaction. PostgreSQL estimates the relations
  the models derive (the latest batch of each day, windows, groups) at a row or two whatever their size, and on
  such an estimate joins by nested loop: quadratic. A 1-day stg_bookings__bookings took 3.6 s on 7,800 rows and ran
  for minutes on a month. Bulk transformations join by hashing; with nested loops priced out PostgreSQL still uses
  one where nothing else can join. DuckDB plans no nested loop for an equality join: nothing to do.
#}
{% macro prefer_hash_joins() %}
    {{ return(adapter.dispatch('prefer_hash_joins', 'flight_platform')()) }}
{% endmacro %}

{% macro default__prefer_hash_joins() %}{% endmacro %}

{% macro postgres__prefer_hash_joins() %}set local enable_nestloop = off{% endmacro %}

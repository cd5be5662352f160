-- Each fetched account-day and whether it is proven complete: 'complete' (a window under the
-- 500-row cap covered it) or 'flagged' (the day alone returned 500 rows). Days absent here were
-- never fetched for that account. The latest fetch of a day decides.
SELECT account_id, day, arg_max(outcome, fetched_at) AS status, max(fetched_at) AS fetched_at
FROM (
    SELECT account_id, outcome, fetched_at,
           unnest(range(start_date, end_date, INTERVAL 1 DAY))::DATE AS day
    FROM transaction_windows
    WHERE outcome <> 'capped'
)
GROUP BY account_id, day
ORDER BY account_id, day;

-- Transactions per day and their net flow in major units, per currency (posted only).
-- Amounts are positive for money out (the vendor convention), so the net flow is minus their sum.
SELECT
    date,
    currency,
    count(*) AS transactions,
    -sum(amount) / 100.0 AS net_flow,
    sum(amount) FILTER (WHERE amount > 0) / 100.0 AS money_out,
    -sum(amount) FILTER (WHERE amount < 0) / 100.0 AS money_in
FROM transactions
WHERE NOT coalesce(is_pending, false)
GROUP BY date, currency
ORDER BY date, currency;

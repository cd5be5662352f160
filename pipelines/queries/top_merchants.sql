-- Where the money goes: the merchants with the most money out over the last 30 days.
SELECT merchant_name, currency, count(*) AS transactions, sum(amount) / 100.0 AS spent
FROM transactions
WHERE amount > 0 AND date >= current_date - INTERVAL 30 DAY
GROUP BY merchant_name, currency
ORDER BY spent DESC
LIMIT 10;

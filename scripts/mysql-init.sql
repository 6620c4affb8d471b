-- Run once by the mysql container on first start (docker-compose.yml). The tests create and drop
-- throwaway databases whose names start with the lesson database's name (sessions_test, ...).
GRANT ALL PRIVILEGES ON `sessions\_%`.* TO 'course'@'%';
FLUSH PRIVILEGES;
